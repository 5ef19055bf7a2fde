"""Training that a user can trust: the same LoRA weights from every run of one config, and a run stopped
halfway that resumes to those same weights. A tiny random Phi-3 (tests/conftest.py), real `olive run`s."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import check

pytestmark = pytest.mark.slow

# 200 steps of 4 rows at a checkpoint every 20: long enough to stop the run after its first checkpoint
# (measured: 60 steps train in 5 s), short enough for CI. Rank 8: see TINY_LORA_R in conftest.py.
# the export search is tested in test_e2e.py; here one recipe is enough
TINY_SCHEDULE = {"__epochs": "0.1", "__min_steps": "200", "__lora_r": "8", "__export_search": "no"}


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


def test_two_runs_of_one_config_give_byte_identical_lora_weights(uninterrupted):
    one, two = uninterrupted
    assert adapter_digest(one) == adapter_digest(two)
    # and the run kept the checkpoint with the lowest validation loss, evaluated on the validation rows
    state = json.loads(next((one.path / "gen-model/checkpoints").glob("checkpoint-200/trainer_state.json")).read_text())
    evaluated = {entry["step"]: entry["eval_loss"] for entry in state["log_history"] if "eval_loss" in entry}
    assert len(evaluated) == 10
    best_step = int(state["best_model_checkpoint"].rsplit("-", 1)[1])
    assert evaluated[best_step] == min(evaluated.values())
    report = check(one.run("fine-tuning/report.py")).stdout
    assert f"rows 216, steps 200, epochs 3.704, best step {best_step}" in report, report
    assert (one.path / "gen-model/report/training-loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_stopped_after_a_checkpoint_resumes_to_the_same_weights(bake, tiny_phi3_dir, uninterrupted):
    project = bake(local_model_path=str(tiny_phi3_dir), project_slug="resumed", **TINY_SCHEDULE)
    checkpoints = project.path / "gen-model/checkpoints"
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
        while not any(checkpoints.glob("checkpoint-*/trainer_state.json")):  # a complete checkpoint
            assert process.poll() is None and time.time() < deadline, (project.path / "stopped.log").read_text()
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)  # Ctrl-C
        process.wait(timeout=120)
    assert process.returncode != 0, "the run finished before it was stopped: lengthen TINY_SCHEDULE"
    steps_done = max(
        int(state.parent.name.rsplit("-", 1)[1]) for state in checkpoints.glob("checkpoint-*/trainer_state.json")
    )
    assert steps_done < 200
    resumed = check(project.run("-m", "olive", "run", "--config", "fine-tuning/olive-config.json"))
    log = resumed.stdout + resumed.stderr
    assert "resuming the interrupted training run" in log and f"global step {steps_done}" in log, log[-3000:]
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
    assert (project.path / "gen-model/checkpoints.previous/checkpoint-200").is_dir()
