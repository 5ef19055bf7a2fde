"""Early stopping inside `olive run`: training ends when the validation loss has not improved for N evaluations.

Olive 0.13's LoRA pass builds its `transformers.Trainer` itself and takes no callbacks from the config. The
training data's pre-processing (slm/train/olive_data.py) runs inside that pass just before the Trainer is built, and
its `early_stopping_patience` key comes here: `stop_early_after(N)` makes the Trainers built from then on carry
transformers' own `EarlyStoppingCallback(N)` (0: none). The Trainer evaluates on the validation rows and saves a
checkpoint at the same steps (`eval_steps` = `save_steps`), so the step it stops at is saved, and
`load_best_model_at_end` then loads the best checkpoint: the model is the best step, as without stopping.

The callback's count of evaluations without improvement is saved in every checkpoint's trainer_state.json
(`stateful_callbacks`) and restored on resume (`training_args.restore_callback_states_from_checkpoint`), so a
resumed run stops where an uninterrupted one does.
"""

import logging

import transformers

from slm.project import EARLY_STOPPING_KEY
from slm.train.trainer_methods import replace_trainer_method

logger = logging.getLogger("olive.slm")


class StopWhenValidationStalls(transformers.EarlyStoppingCallback):
    """transformers' EarlyStoppingCallback that also stops a run resumed from the checkpoint it stopped at (the
    run was cut off after that save, while loading the best checkpoint): without this, the restored count would
    only be acted on at the next evaluation, and a better loss there would give another model."""

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        if self.early_stopping_patience_counter >= self.early_stopping_patience:
            control.should_training_stop = True


def stop_early_after(patience: int) -> None:
    """Give every Trainer built from now on a StopWhenValidationStalls(patience); 0 takes it away."""
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
        raise ValueError(f"{EARLY_STOPPING_KEY} must be a whole number of evaluations, 0 for none; got {patience!r}")

    def with_early_stopping(build):
        def build_with_early_stopping(self, *args, **kwargs):
            build(self, *args, **kwargs)
            if patience:
                self.add_callback(StopWhenValidationStalls(patience))

        return build_with_early_stopping

    replace_trainer_method("__init__", with_early_stopping)
    if patience:
        logger.info("early stopping: after %d evaluations without a lower validation loss", patience)
