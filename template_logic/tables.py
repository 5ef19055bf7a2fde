"""The template's data, each fact read from the one place it is written: cookiecutter.json's tables, and the
generated project's dependency-free modules, loaded from the template folder without rendering it."""

import importlib.util
import json
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent.parent
PROJECT_DIR = TEMPLATE_DIR / "{{cookiecutter.project_slug}}"
# the template's own tables, read from cookiecutter.json: a replayed context may carry an older copy
CONTEXT = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))
TARGET_MODULES, STACK = CONTEXT["_target_modules"], CONTEXT["_stack"]
# A row that names a shared row (`"like": "_phi"`: the four Phi rows share everything but their download size)
# is that row with its own fields on top
MODELS = {
    name: {**CONTEXT[row["like"]], **{key: value for key, value in row.items() if key != "like"}}
    if "like" in row
    else row
    for name, row in CONTEXT["_models"].items()
}
# the default names Phi-3: a project left at it is titled after the model it fine-tunes (answers.project_title)
DEFAULT_PROJECT_NAME = CONTEXT["project_name"]

SAMPLE_COLUMNS = ("phrase", "tone")
# (training, validation, held-out eval) files of each data format
DATA_FILES = {
    "columns": ("datasets/train.json", "datasets/validation.json", "datasets/eval.json"),
    "messages": ("datasets/train.jsonl", "datasets/validation.jsonl", "datasets/eval.jsonl"),
}


def project_module(relative):
    """A dependency-free module of the generated project, the one definition of what it holds."""
    path = PROJECT_DIR / relative
    spec = importlib.util.spec_from_file_location("project_" + path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PROMPTS = project_module("slm/prompts.py")  # the training text
SEARCH_METRICS = project_module("slm/export/search_metrics.py")  # the export search's evaluator and metrics
