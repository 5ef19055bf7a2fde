"""slm/train/early_stopping.py: when training stops, fed the validation losses as the Trainer feeds them."""

from types import SimpleNamespace

import pytest

from slm.train.early_stopping import StopWhenValidationStalls, replay
from slm.train.schedule import Schedule

# the 2016 debates' validation loss (SmolLM2, 655 training rows, batch 8: the first pass ends at step 82), evaluated
# every 13 steps: it jumps in the first pass and comes back below its step-26 value at step 78
DEBATES = [
    (13, 0.3651),
    (26, 0.2855),
    (39, 0.4932),
    (52, 0.3004),
    (65, 0.3290),
    (78, 0.2454),
    (91, 0.2561),
    (104, 0.2093),
    (117, 0.1970),
    (130, 0.2538),
    (143, 0.2368),
    (156, 0.2176),
    (169, 0.2015),
]


@pytest.mark.parametrize(("counted_from", "stop", "kept"), [(0, 65, 26), (82, 156, 117)])
def test_stalls_in_the_first_pass_do_not_end_the_run(counted_from, stop, kept):
    assert replay(DEBATES, 3, counted_from) == (stop, kept)


def test_a_resumed_run_keeps_where_stalls_are_counted_from():
    stopper = StopWhenValidationStalls(3, counted_from_step=82)
    args = SimpleNamespace(metric_for_best_model="eval_loss", greater_is_better=False)
    control = SimpleNamespace(should_training_stop=False)
    for step, loss in DEBATES[8:11]:  # 117 the best, then 130 and 143: two stalls, saved in the checkpoint
        state = SimpleNamespace(best_metric=0.1970 if step > 117 else 0.2093, global_step=step)
        stopper.on_evaluate(args, state, control, metrics={"eval_loss": loss})
    saved = stopper.state()
    # transformers' _load_callback_state: the class called with the saved args, then the attributes set
    resumed = StopWhenValidationStalls(**saved["args"])
    for name, value in saved["attributes"].items():
        setattr(resumed, name, value)
    assert resumed.counted_from_step == 82 and resumed.early_stopping_patience_counter == 2
    state = SimpleNamespace(best_metric=0.1970, global_step=156)
    resumed.on_evaluate(args, state, control, metrics={"eval_loss": 0.2176})
    assert control.should_training_stop


@pytest.mark.parametrize(
    ("rows", "epochs", "fixed", "counted_from"),
    [(655, 3, None, 82), (100, 3, None, 13), (4000, 3, None, 270), (655, 3, 2, 1)],
)
def test_stalls_count_from_the_first_pass_or_half_the_schedule(rows, epochs, fixed, counted_from):
    # (4,000 rows: 1,500 scheduled steps cut to a step_cap of 540, so the first pass, 500 steps, ends after half)
    schedule = Schedule(rows, 8, epochs, min_steps=100, step_cap=540, fixed_steps=fixed)
    assert schedule.stalls_counted_from == counted_from
