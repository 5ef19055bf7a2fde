"""Fast self-checks of this project: run `pytest` from the project root (no model needed)."""

import ast
import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from slm.data import load_rows
from slm.project import Project
from slm.train.check_config import check_config
from slm.train.checkpoints import guard_checkpoints, last_checkpoint, run_fingerprint
from slm.train.data_report import input_key

ROOT = Path(__file__).resolve().parents[1]
PROJECT = Project.load(ROOT / "fine-tuning/olive-config.json")


def test_olive_config_is_strictly_valid():
    check_config(PROJECT.config, root=ROOT)


def test_config_paths_stay_inside_the_project():
    assert (ROOT / PROJECT.train_file).is_file() and (ROOT / PROJECT.eval_file).is_file()
    for folder in (PROJECT.config["output_dir"], PROJECT.config["cache_dir"]):
        assert not Path(folder).is_absolute() and (ROOT / folder).parent.is_dir()


def test_datasets_pass_the_checks_and_do_not_overlap():
    task = PROJECT.task
    train, held_out = (load_rows(ROOT / path, task) for path in (PROJECT.train_file, PROJECT.eval_file))
    seen_in_train = {input_key(row, task) for row in train}
    assert not any(input_key(row, task) in seen_in_train for row in held_out)


def test_every_script_the_readme_names_answers_help():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    scripts = sorted(set(re.findall(r"python ([\w/-]+\.py)", readme)) - {"setup/install.py"})
    assert "inferences/infer.py" in scripts and "datasets/prepare.py" in scripts
    for script in scripts:
        # the package from this folder, installed or not, as pytest itself imports it (pyproject.toml)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        result = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, env=env)
        assert result.returncode == 0, f"{script}: {result.stderr}"


def test_onnx_runs_on_every_cpu_of_the_process_unless_genai_config_says_otherwise(monkeypatch):
    from slm import engines

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)
    plain = {"model": {"decoder": {"session_options": {"log_id": "onnxruntime-genai"}}}}
    assert engines.onnx_session_overlay(plain, "cpu") == {
        "model": {"decoder": {"session_options": {"intra_op_num_threads": 3}}}
    }
    own = {"model": {"decoder": {"session_options": {"intra_op_num_threads": 1}}}}
    assert engines.onnx_session_overlay(own, "cpu") is None
    assert engines.onnx_session_overlay(plain, "cuda") is None


class _ScriptedEngine:
    """Timed tokens, and what a plain run of the same prompt gives (end-of-sequence is 2)."""

    def __init__(self, ignore_eos_changes_tokens):
        self.ignore_eos_changes_tokens = ignore_eos_changes_tokens
        self.plain_runs = []

    def generate_ids(self, prompt_ids, max_new_tokens, adapter=None):
        self.plain_runs.append((list(prompt_ids), max_new_tokens, adapter))
        return iter([7, 8, 2, 5])


def test_benchmark_scores_the_plain_run_where_ignoring_eos_changes_the_tokens():
    from slm.bench.measure import scored_ids

    onnx_like = _ScriptedEngine(ignore_eos_changes_tokens=True)
    assert scored_ids(onnx_like, [1, 3], [7, 9, 9, 9], 4, {2}, {"adapter": "a"}) == [7, 8]
    assert onnx_like.plain_runs == [([1, 3], 4, "a")]
    torch_like = _ScriptedEngine(ignore_eos_changes_tokens=False)
    assert scored_ids(torch_like, [1, 3], [7, 9, 2, 9], 4, {2}, {}) == [7, 9]
    assert scored_ids(torch_like, [1, 3], [7, 9, 9, 9], 4, {2}, {}) == [7, 9, 9, 9]
    assert torch_like.plain_runs == []


def test_the_package_docstring_names_every_module():
    import slm

    named = set(re.findall(r"^- ([\w.]+):", slm.__doc__, flags=re.MULTILINE))
    package = ROOT / "slm"
    modules = {
        ".".join(path.relative_to(package).with_suffix("").parts)
        for path in package.rglob("*.py")
        if path.stem != "__init__"
    }
    assert modules <= named, f"add to slm/__init__.py's module map: {sorted(modules - named)}"
    # a compute=local project leaves the Azure ML module out; any other name must be a module
    assert named - modules <= {"train.azureml"}, f"not modules: {sorted(named - modules - {'train.azureml'})}"


ENTRY_FOLDERS = ("datasets", "fine-tuning", "inferences", "setup")


def imported_names(path):
    """Every slm module or name a module imports (`from slm import x` counts as slm.x)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "slm":
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return names


def command_modules():
    """The modules whose `main` an entry script runs."""
    scripts = [path for folder in ENTRY_FOLDERS for path in (ROOT / folder).rglob("*.py")]
    return {found for path in scripts for found in re.findall(r"from (slm[\w.]*) import main", path.read_text())}


def test_no_module_imports_a_command_line_module():
    """A command-line module (the `main` an entry script runs) is an entry point, never a library: what two
    commands share lives in a module neither of them is."""
    commands = command_modules()
    assert "slm.infer" in commands and len(commands) >= 8, commands
    for path in (ROOT / "slm").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        assert not (imported_names(path) & commands) - {module}, f"{module} imports a command-line module"


def test_the_shared_modules_import_no_job_folder():
    """Imports point one way: the shared modules at the top of slm/ (not its command-line ones) import nothing
    from the job folders (train/, export/, serve/, bench/), which build on them."""
    package = ROOT / "slm"
    folders = {path.name for path in package.iterdir() if (path / "__init__.py").is_file()}
    assert folders == {"train", "export", "serve", "bench"}, folders
    commands = command_modules()
    for path in package.glob("*.py"):
        if f"slm.{path.stem}" in commands:
            continue
        reaching = {name for name in imported_names(path) if name.split(".")[1:2] and name.split(".")[1] in folders}
        assert not reaching, f"slm/{path.name} imports {sorted(reaching)}: move what it needs up, or it down"


def test_a_benchmark_child_killed_by_a_signal_is_named():
    from slm.bench.measure import child_failure

    peer = child_failure("llama", -4)
    assert peer.startswith("the llama.cpp peer died with SIGILL (illegal instruction): ")
    assert 'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install' in peer
    assert child_failure("torch", -9).startswith("the PyTorch measurement died with SIGKILL")
    assert child_failure("onnx", 1) == "the ONNX Runtime GenAI measurement failed (its error is printed above)"


def test_the_benchmark_chart_is_a_grid_of_panels(tmp_path):
    """Six panels in rows of three, a picture read without zooming (one row of six was 3,630 x 396 px)."""
    from PIL import Image

    from slm.bench.benchmark import CHART_KEYS, draw_chart

    result = dict.fromkeys(CHART_KEYS, 1.0) | {"prompts": 8, "tokens_per_answer": 4}
    draw_chart([("onnx", result), ("pytorch", result), ("llama.cpp Q4_1", result)], tmp_path / "chart.png")
    width, height = Image.open(tmp_path / "chart.png").size
    assert 1.5 < width / height < 2.5 and width < 2000, (width, height)


def test_progress_bars_write_a_line_every_30_seconds_into_a_log(tmp_path):
    from slm.progress import progress_options

    with open(tmp_path / "log", "w") as log:
        assert progress_options(log)["mininterval"] == 30

    class Terminal:
        def isatty(self):
            return True

    assert "mininterval" not in progress_options(Terminal())


def test_the_trainer_prints_log_lines_instead_of_a_bar_into_a_log(tmp_path, monkeypatch):
    """Inside `olive run > log` (slm/train/olive_data.py): the Trainer Olive builds gets the callback `disable_tqdm`
    selects, unless the config sets disable_tqdm itself; on a terminal, the bar."""
    import torch
    from transformers import Trainer, TrainingArguments, trainer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from slm.progress import quiet_trainer_bar_in_logs

    def progress_callbacks():
        args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
        callbacks = Trainer(model=torch.nn.Linear(1, 1), args=args).callback_handler.callbacks
        return {type(callback) for callback in callbacks} & {PrinterCallback, ProgressCallback}

    class Terminal:
        def isatty(self):
            return True

    # transformers' own default (importing slm/train/olive_data.py in an earlier test may have swapped it already)
    monkeypatch.setattr(trainer, "DEFAULT_PROGRESS_CALLBACK", ProgressCallback)
    assert not quiet_trainer_bar_in_logs({}, Terminal())
    assert progress_callbacks() == {ProgressCallback}
    with open(tmp_path / "log", "w") as log:
        assert not quiet_trainer_bar_in_logs({"disable_tqdm": False}, log)  # the user's choice
        assert progress_callbacks() == {ProgressCallback}
        assert quiet_trainer_bar_in_logs({}, log)
    assert progress_callbacks() == {PrinterCallback}


def test_last_checkpoint_is_the_one_the_trainer_resumes_from(tmp_path):
    from transformers.trainer_utils import get_last_checkpoint

    assert last_checkpoint(tmp_path / "none-yet") is None and last_checkpoint(tmp_path) is None
    for name in ("checkpoint-9", "checkpoint-10", "checkpoint-x", "old-checkpoint-500", "checkpoint-40.previous"):
        (tmp_path / name).mkdir()
    (tmp_path / "checkpoint-200").write_text("a file, not a checkpoint")
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-10" == Path(get_last_checkpoint(str(tmp_path)))


def test_only_the_trainers_checkpoint_folders_decide_a_resume(tmp_path):
    """A stray `checkpoint-x` folder or a file named `checkpoint-200` is not a checkpoint to resume from (Olive's
    LoRA pass resumes from `get_last_checkpoint`'s choice); a checkpoint cut off mid-save goes, the one before stays."""
    config = copy.deepcopy(PROJECT.config)
    checkpoints = tmp_path / "checkpoints"
    config["passes"]["finetune"]["config"]["training_args"]["output_dir"] = str(checkpoints)
    project = Project(config, PROJECT.config_path)
    schedule = SimpleNamespace(rows=24, batch_size=8, steps=6, passes=2.0)
    assert guard_checkpoints(project, schedule) is False  # the first run: nothing to resume

    (checkpoints / "checkpoint-x").mkdir(parents=True)
    (checkpoints / "checkpoint-200").write_text("a file, not a checkpoint")
    assert guard_checkpoints(project, schedule) is False  # the same run's folder, but no checkpoint in it
    assert not checkpoints.exists() and (tmp_path / "checkpoints.previous/checkpoint-200").is_file()

    for step in (10, 20):
        (checkpoints / f"checkpoint-{step}").mkdir(parents=True)
    (checkpoints / "checkpoint-10/trainer_state.json").write_text("{}")
    assert guard_checkpoints(project, schedule) is True
    assert sorted(path.name for path in checkpoints.iterdir()) == ["checkpoint-10"]


def test_a_changed_training_setting_is_another_run_and_a_logging_setting_is_not():
    """The fingerprint that decides whether `olive run` resumes from the checkpoints in its folder."""

    def fingerprint(**training_args):
        config = copy.deepcopy(PROJECT.config)
        config["passes"]["finetune"]["config"]["training_args"].update(training_args)
        return run_fingerprint(Project(config, PROJECT.config_path))

    assert fingerprint() == run_fingerprint(PROJECT)
    assert fingerprint(logging_steps=1, report_to="tensorboard", log_level="debug") == fingerprint()
    assert fingerprint(learning_rate=0.01) != fingerprint() != fingerprint(seed=1)
