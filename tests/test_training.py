"""Training that a user can trust: the same LoRA weights from every run of one config, a run stopped
halfway that resumes to those same weights, and training that stops when the validation loss stops improving,
ending with the best checkpoint. A tiny random Phi-3 (tests/conftest.py), real `olive run`s."""

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import check

from template_logic.workflow import EVAL_FRACTION

pytestmark = pytest.mark.slow

# 200 scheduled steps of 4 rows, evaluated and saved every 20. The tiny random model learns next to nothing, so its
# validation loss wanders (lr 0.5, bfloat16: 10.115 lowest at step 40, then 10.131, 10.150, 10.222 on one CPU;
# 10.123 at step 20, then 10.298, 10.212, 10.233, and 10.117 at step 100 on another, with AVX512-BF16, where a
# patience of 3 ran the whole schedule). A patience of 2 ends both at step 80: two counted evaluations in a row
# without a new low is the likely end of a wandering curve, where three is not. The resumed run is stopped after
# a checkpoint that already counts one evaluation without improvement. What is tested is the mechanism (stop,
# best checkpoint kept, resume, byte-identical runs); the default patience of 3 is measured on real data
# (docs/training.md, "Early stopping"). Rank 8: see TINY_LORA_R in conftest.py. The export search is tested in
# test_e2e.py; here one recipe is enough.
PATIENCE = 2
TINY_SCHEDULE = {
    "__epochs": "0.1",
    "__min_steps": "200",
    "__learning_rate": "0.5",
    "__lora_r": "8",
    "__early_stopping_patience": str(PATIENCE),
    "__export_search": "no",
}
SCHEDULED_STEPS = 200
EVAL_INTERVAL = math.ceil(SCHEDULED_STEPS * EVAL_FRACTION)  # transformers' reading of a fractional eval_steps


def adapter_digest(project):
    """The sha256 of the LoRA weights the run produced (in Olive's cache: exactly one LoRA run per project)."""
    adapters = list((project.path / "gen-model/olive-cache").rglob("adapter/adapter_model.safetensors"))
    assert len(adapters) == 1, adapters
    return hashlib.sha256(adapters[0].read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def uninterrupted(cookies_session, tiny_phi3_dir):
    from conftest import OFFLINE, BakedProject

    def bake_and_run(slug):
        answers = {**OFFLINE, "local_model_path": str(tiny_phi3_dir), "project_slug": slug, **TINY_SCHEDULE}
        project = BakedProject(cookies_session.bake(extra_context=answers))
        check(project.run("-m", "olive", "run", "--config", "fine-tuning/olive-config.json"))
        return project

    return bake_and_run("seed-one"), bake_and_run("seed-two")


def trainer_states(project):
    """Each complete checkpoint's trainer_state.json, by step; one that a running Trainer is writing or removing
    (save_total_limit) is left out."""
    states = {}
    for path in (project.path / "gen-model/checkpoints").glob("checkpoint-*/trainer_state.json"):
        try:
            states[int(path.parent.name.rsplit("-", 1)[1])] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return states


def stall_count(state):
    return state["stateful_callbacks"]["StopWhenValidationStalls"]["attributes"]["early_stopping_patience_counter"]


def test_two_runs_of_one_config_give_byte_identical_lora_weights(uninterrupted):
    from safetensors.torch import load_file

    one, two = uninterrupted
    assert adapter_digest(one) == adapter_digest(two)
    # the run stopped early: its last PATIENCE evaluations found no lower validation loss than the best before them
    states = trainer_states(one)
    stopped = max(states)
    state = states[stopped]
    assert stopped < SCHEDULED_STEPS and state["max_steps"] == SCHEDULED_STEPS, [
        (entry["step"], entry["eval_loss"]) for entry in state["log_history"] if "eval_loss" in entry
    ]
    evaluated = {entry["step"]: entry["eval_loss"] for entry in state["log_history"] if "eval_loss" in entry}
    assert sorted(evaluated) == list(range(EVAL_INTERVAL, stopped + 1, EVAL_INTERVAL))
    best_step = int(state["best_model_checkpoint"].rsplit("-", 1)[1])
    assert evaluated[best_step] == min(evaluated.values())
    # stalls are counted from the end of the first pass over the 216 rows, at 4 a step
    counted_from = state["stateful_callbacks"]["StopWhenValidationStalls"]["args"]["counted_from_step"]
    assert counted_from == math.ceil(216 / 4)
    counted = [step for step in evaluated if step > best_step and step >= counted_from]
    assert len(counted) == PATIENCE and counted[-1] == stopped
    assert stall_count(state) == PATIENCE
    # and kept the checkpoint with the lowest validation loss as the model (Olive's adapter holds its weights)
    kept = load_file(next((one.path / "gen-model/olive-cache").rglob("adapter/adapter_model.safetensors")))
    best = load_file(one.path / f"gen-model/checkpoints/checkpoint-{best_step}/adapter_model.safetensors")
    assert kept.keys() == best.keys() and all(kept[name].equal(best[name]) for name in kept)
    report = check(one.run("fine-tuning/report.py")).stdout
    expected = (
        f"rows 216, stopped early at step {stopped} of {SCHEDULED_STEPS}: no better validation loss in {PATIENCE} "
        f"evaluations; best step {best_step}"
    )
    assert expected in report, report
    assert (one.path / "gen-model/report/training-loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_stopped_after_a_checkpoint_resumes_to_the_same_weights(bake, tiny_phi3_dir, uninterrupted):
    project = bake(local_model_path=str(tiny_phi3_dir), project_slug="resumed", **TINY_SCHEDULE)
    command = [sys.executable, "-m", "olive", "run", "--config", "fine-tuning/olive-config.json"]
    env = {**os.environ, "OLIVE_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(project.path)}
    with open(project.path / "stopped.log", "w") as log:
        # a shell's background job (CI's may be one) ignores SIGINT, and its children inherit that: give the run
        # the default disposition, as in a terminal, so that Python turns Ctrl-C into KeyboardInterrupt
        process = subprocess.Popen(
            command,
            cwd=project.path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.time() + 600
        # a complete checkpoint after an evaluation without improvement: the resumed run has to carry that count
        # on to stop where the uninterrupted runs did
        while not any(stall_count(state) for state in trainer_states(project).values()):
            assert process.poll() is None and time.time() < deadline, (project.path / "stopped.log").read_text()
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)  # Ctrl-C
        process.wait(timeout=120)
    assert process.returncode != 0, "the run finished before it was stopped: lengthen TINY_SCHEDULE"
    stopped_at = max(trainer_states(uninterrupted[0]))
    steps_done = max(trainer_states(project))
    assert steps_done < stopped_at and stall_count(trainer_states(project)[steps_done]) >= 1
    resumed = check(project.run("-m", "olive", "run", "--config", "fine-tuning/olive-config.json"))
    log = resumed.stdout + resumed.stderr
    assert "resuming the interrupted training run" in log and f"global step {steps_done}" in log, log[-3000:]
    assert max(trainer_states(project)) == stopped_at
    assert adapter_digest(project) == adapter_digest(uninterrupted[0])


def test_changed_settings_start_afresh_and_keep_the_old_checkpoints(uninterrupted):
    project = uninterrupted[1]
    config_file = project.path / "fine-tuning/olive-config.json"
    config = json.loads(config_file.read_text())
    config["passes"]["finetune"]["config"]["training_args"]["learning_rate"] = 0.01
    # and a shorter schedule, the rerun itself not being what is checked (the project's tests/test_project.py
    # checks that a training setting alone makes another run)
    config["data_configs"][0]["pre_process_data_config"]["min_steps"] = 20
    config_file.write_text(json.dumps(config, indent=2))
    rerun = check(project.run("-m", "olive", "run", "--config", "fine-tuning/olive-config.json"))
    log = rerun.stdout + rerun.stderr
    assert "held a training run of other settings or data" in log and "resuming" not in log, log[-3000:]
    stopped_at = max(trainer_states(uninterrupted[0]))
    assert (project.path / f"gen-model/checkpoints.previous/checkpoint-{stopped_at}").is_dir()
