"""fine-tuning/report.py's summary line from the files a training run leaves (no training run)."""

import copy
import json

import pytest

from slm.project import Project
from slm.train.checkpoints import run_record
from slm.train.report import read_training, summary_line

CONFIG = Project.load("fine-tuning/olive-config.json").config
EVAL_LOSSES = {20: 10.039, 40: 10.030, 60: 10.028, 80: 10.101, 100: 10.060, 120: 10.035}


def trainer_state(step, stalled, patience=3):
    """A trainer_state.json as transformers 5 writes it at a checkpoint of a run with early stopping."""
    evaluations = {at: loss for at, loss in EVAL_LOSSES.items() if at <= step}
    best = min(evaluations, key=evaluations.get)
    return {
        "global_step": step,
        "max_steps": 200,
        "best_model_checkpoint": f"gen-model/checkpoints/checkpoint-{best}",
        "best_metric": evaluations[best],
        "log_history": [{"step": at, "eval_loss": loss} for at, loss in evaluations.items()],
        "stateful_callbacks": {
            "StopWhenValidationStalls": {
                "args": {"early_stopping_patience": patience, "early_stopping_threshold": 0.0},
                "attributes": {"early_stopping_patience_counter": stalled},
            },
            "TrainerControl": {"args": {"should_training_stop": stalled >= patience}, "attributes": {}},
        },
    }


def summary(tmp_path, state):
    config = copy.deepcopy(CONFIG)
    checkpoints = tmp_path / "checkpoints"
    config["passes"]["finetune"]["config"]["training_args"]["output_dir"] = str(checkpoints)
    (checkpoints / f"checkpoint-{state['global_step']}").mkdir(parents=True)
    (checkpoints / f"checkpoint-{state['global_step']}" / "trainer_state.json").write_text(json.dumps(state))
    run_record(checkpoints).write_text(json.dumps({"rows": 216, "epochs": 3.704}))
    return summary_line(read_training(Project(config)))


def test_a_run_stopped_early_says_where_and_why(tmp_path):
    line = summary(tmp_path, trainer_state(120, stalled=3))
    assert line.startswith(
        "rows 216, stopped early at step 120 of 200: no better validation loss in 3 evaluations; "
        "best step 60 (validation loss 10.0280), epochs 2.222 of 3.704"
    ), line


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        # stopped with Ctrl-C after an evaluation without improvement: not an early stop
        (trainer_state(80, stalled=1), "rows 216, steps 80 of 200 (not finished), epochs 3.704, best step 60"),
        # the count reached the patience at the last scheduled step: the whole schedule ran
        (
            {**trainer_state(120, stalled=3), "max_steps": 120},
            "rows 216, steps 120, epochs 3.704, best step 60",
        ),
        # checkpoints of a run without early stopping (patience 0, or a project made before it)
        ({**trainer_state(120, stalled=0), "stateful_callbacks": {}}, "rows 216, steps 120 of 200 (not finished)"),
    ],
)
def test_other_runs_do_not_claim_an_early_stop(tmp_path, state, expected):
    line = summary(tmp_path, state)
    assert line.startswith(expected) and "stopped early" not in line, line
