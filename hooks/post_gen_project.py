"""After rendering: trim what the answers do not need, install the stack, fetch the base model.

Runs inside the new project. A failed install or download never removes the project:
it prints what failed and the exact command to retry, and cookiecutter still succeeds.
The work itself lives in the project's setup/ scripts, so the retry command is the same
code the hook ran.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

# The answers arrive as data: a JSON string literal, decoded here, never pasted into code.
ANSWERS = json.loads({{cookiecutter | to_json | to_json}})

PROJECT = Path.cwd()
VENV_PYTHON = Path(".venv/bin/python")


AZUREML_FILES = ("fine-tuning/azureml", ".azureml", ".amlignore")


def remove_unneeded_files(answers):
    if answers["local_model_path"].strip():
        # the project trains from the user's own folder; nothing will ever be cached here
        shutil.rmtree("model-cache")
    if answers["compute"] != "azureml":
        for name in AZUREML_FILES:
            path = Path(name)
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


SAMPLE_COLUMNS = ("phrase", "tone")
SAMPLE_FILES = ("datasets/train.json", "datasets/eval.json")


def rename_sample_columns(answers):
    """The sample data ships as phrase/tone; give it the column names the user chose."""
    columns = (answers["input_column"], answers["output_column"])
    if columns == SAMPLE_COLUMNS:
        return
    renames = dict(zip(SAMPLE_COLUMNS, columns, strict=True))
    for name in SAMPLE_FILES:
        path = Path(name)
        rows = json.loads(path.read_text(encoding="utf-8"))
        rows = [{renames[key]: value for key, value in row.items()} for row in rows]
        path.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def run_step(what, command, retry):
    """Run one set-up step; on failure say so and how to retry, and carry on."""
    print(f"\n==> {what}", flush=True)
    if subprocess.run(command).returncode == 0:
        return True
    print(
        f"WARNING: {what} did not finish. Your project is intact at {PROJECT}\n"
        f"         Retry with:  cd {PROJECT} && {retry}",
        file=sys.stderr,
    )
    return False


def install_dependencies(answers):
    if answers["install_dependencies"] != "yes":
        return
    run_step("Installing the pinned stack into .venv", [sys.executable, "setup/install.py"], "python setup/install.py")


def download_model(answers):
    if answers["download_model"] != "yes" or answers["local_model_path"].strip():
        return
    python = VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable)
    shown = ".venv/bin/python" if python == VENV_PYTHON else "python"
    run_step(
        f"Getting the base model {answers['base_model']}",
        [str(python), "setup/get_model.py"],
        f"{shown} setup/get_model.py",
    )


def print_next_steps(answers):
    print(f"\nProject ready: {PROJECT}\nNext: cd {PROJECT} and follow README.md")


def main():
    remove_unneeded_files(ANSWERS)
    rename_sample_columns(ANSWERS)
    install_dependencies(ANSWERS)
    download_model(ANSWERS)
    print_next_steps(ANSWERS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
