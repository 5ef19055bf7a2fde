"""Fast self-checks of this project: run `pytest` from the project root (no model needed)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fine-tuning"))
sys.path.insert(0, str(ROOT / "datasets"))
sys.path.insert(0, str(ROOT / "inferences"))

import check_config  # noqa: E402
import prepare  # noqa: E402
from task import Task, load_olive_config  # noqa: E402

CONFIG = ROOT / "fine-tuning/olive-config.json"


def test_olive_config_is_strictly_valid():
    check_config.check_config(json.loads(CONFIG.read_text(encoding="utf-8")))


def test_config_paths_exist():
    config = load_olive_config(CONFIG)
    for data_config in config["data_configs"]:
        assert (ROOT / data_config["load_dataset_config"]["data_files"]).is_file()
    for folder in (config["output_dir"], config["cache_dir"]):
        assert not Path(folder).is_absolute() and (ROOT / folder).parent.is_dir()


def test_datasets_pass_the_prepare_checks_and_do_not_overlap():
    task = Task.from_olive_config(load_olive_config(CONFIG))
    columns = [task.input_column, task.output_column]
    splits = {}
    for name in ("train.json", "eval.json"):
        path = ROOT / "datasets" / name
        splits[name] = prepare.check_rows(path, prepare.read_rows(path), columns)
    seen_in_train = {row[task.input_column].casefold() for row in splits["train.json"]}
    assert not any(row[task.input_column].casefold() in seen_in_train for row in splits["eval.json"])


def test_scripts_answer_help():
    for script in (
        "inferences/infer.py",
        "inferences/benchmark.py",
        "datasets/prepare.py",
        "fine-tuning/check_config.py",
    ):
        result = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, f"{script}: {result.stderr}"
