"""Early stopping inside `olive run`: training ends when the validation loss has not improved for N evaluations.

Olive 0.13's LoRA pass builds its `transformers.Trainer` itself and takes no callbacks from the config. The
training data's pre-processing (slm/train/olive_data.py) runs inside that pass just before the Trainer is built, and
its `early_stopping_patience` key comes here: `stop_early_after(N, step)` makes the Trainers built from then on
carry transformers' own `EarlyStoppingCallback(N)` (0: none), which counts no evaluation before `step` (the
schedule's `stalls_counted_from`: the end of the first pass over the rows). The Trainer evaluates on the validation
rows and saves a checkpoint at the same steps (`eval_steps` = `save_steps`), so the step it stops at is saved, and
`load_best_model_at_end` then loads the best checkpoint: the model is the best step, as without stopping.

The callback's count of evaluations without improvement is saved in every checkpoint's trainer_state.json
(`stateful_callbacks`) and restored on resume (`training_args.restore_callback_states_from_checkpoint`), so a
resumed run stops where an uninterrupted one does.
"""

import logging
from types import SimpleNamespace

import transformers

from slm.project import EARLY_STOPPING_KEY
from slm.train.trainer_methods import replace_trainer_method

logger = logging.getLogger("olive.slm")


class StopWhenValidationStalls(transformers.EarlyStoppingCallback):
    """transformers' EarlyStoppingCallback, with two changes:
    - an evaluation before step `counted_from_step` counts no stall (Keras' `start_from_epoch`): in the first pass
      over the rows the validation loss can jump and come back (the 2016 debates' went 0.286, 0.493, 0.300, 0.329,
      then 0.245 before its first pass ended; docs/training.md, "Early stopping"); the best step is still tracked;
    - it also stops a run resumed from the checkpoint it stopped at (the run was cut off after that save, while
      loading the best checkpoint): without this, the restored count would only be acted on at the next evaluation,
      and a better loss there would give another model.
    `counted_from_step` is saved with the count in every checkpoint, so a resumed run keeps it."""

    def __init__(self, early_stopping_patience: int = 1, early_stopping_threshold: float = 0.0, counted_from_step=0):
        super().__init__(early_stopping_patience, early_stopping_threshold)
        self.counted_from_step = counted_from_step

    def check_metric_value(self, args, state, control, metric_value):
        super().check_metric_value(args, state, control, metric_value)
        if state.global_step < self.counted_from_step:
            self.early_stopping_patience_counter = 0

    def state(self) -> dict:
        saved = super().state()
        saved["args"]["counted_from_step"] = self.counted_from_step
        return saved

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        if self.early_stopping_patience_counter >= self.early_stopping_patience:
            control.should_training_stop = True


def replay(curve: list[tuple[int, float]], patience: int, counted_from_step: int = 0) -> tuple[int | None, int | None]:
    """(the step a StopWhenValidationStalls(patience, counted_from_step) ends training at, None for the end of the
    schedule; the best step by then) on a curve of (step, validation loss), fed as the Trainer feeds it: the best loss
    updated after the callback (transformers' _determine_best_metric runs after on_evaluate). For
    scripts/measure_patience.py and the tests: the rule applied to curves already measured."""
    stopper = StopWhenValidationStalls(patience, counted_from_step=counted_from_step)
    args = SimpleNamespace(metric_for_best_model="eval_loss", greater_is_better=False)
    state = SimpleNamespace(best_metric=None, global_step=0)
    control = SimpleNamespace(should_training_stop=False)
    best = None
    for step, loss in curve:
        state.global_step = step
        stopper.on_evaluate(args, state, control, metrics={"eval_loss": loss})
        if state.best_metric is None or loss < state.best_metric:
            state.best_metric, best = loss, step
        if control.should_training_stop:
            return step, best
    return None, best


def check_patience(patience) -> None:
    """Refuse a patience that is not a whole number of evaluations (0: none)."""
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
        raise ValueError(f"{EARLY_STOPPING_KEY} must be a whole number of evaluations, 0 for none; got {patience!r}")


def stop_early_after(patience: int, counted_from_step: int = 0) -> None:
    """Give every Trainer built from now on a StopWhenValidationStalls(patience) that counts stalls from
    `counted_from_step` on; a patience of 0 takes it away."""
    check_patience(patience)

    def with_early_stopping(build):
        def build_with_early_stopping(self, *args, **kwargs):
            build(self, *args, **kwargs)
            if patience:
                self.add_callback(StopWhenValidationStalls(patience, counted_from_step=counted_from_step))

        return build_with_early_stopping

    replace_trainer_method("__init__", with_early_stopping)
    if patience:
        logger.info(
            "early stopping: after %d evaluations without a lower validation loss, counted from step %d",
            patience,
            counted_from_step,
        )
