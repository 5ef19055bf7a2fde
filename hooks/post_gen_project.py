"""After rendering: trim what the answers do not need, install the stack, fetch the base model.

Runs inside the new project. A failed install or download never removes the project:
it prints what failed and the exact command to retry, and cookiecutter still succeeds.
The work itself lives in the project's setup/ scripts, so the retry command is the same
code the hook ran.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# The answers arrive as data: a JSON string literal, decoded here, never pasted into code.
ANSWERS = json.loads({{cookiecutter | to_json | to_json}})
sys.path.insert(0, ANSWERS["_repo_dir"])

from template_logic.answers import resolve  # noqa: E402
from template_logic.stack import unneeded_files  # noqa: E402
from template_logic.tables import DATA_FILES, SAMPLE_COLUMNS  # noqa: E402

PROJECT = Path.cwd()
# where setup/install.py puts the project's interpreter
VENV_PYTHON = Path(".venv/Scripts/python.exe" if os.name == "nt" else ".venv/bin/python")


def remove_unneeded_files(answers):
    for name in unneeded_files(answers):
        path = Path(name)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def rename_sample_columns(answers):
    """The sample data ships as phrase/tone; give it the column names of the user's template."""
    columns = (answers["input_column"], answers["output_column"])
    if answers["data_format"] != "columns" or columns == SAMPLE_COLUMNS:
        return
    renames = dict(zip(SAMPLE_COLUMNS, columns, strict=True))
    for name in DATA_FILES["columns"]:
        path = Path(name)
        rows = json.loads(path.read_text(encoding="utf-8"))
        rows = [{renames[key]: value for key, value in row.items()} for row in rows]
        path.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def record_data_version():
    """The sample data's digest into the config, as prepare.py records it for the user's data."""
    sys.path.insert(0, str(PROJECT))
    try:
        from slm.project import Project
    finally:
        sys.path.remove(str(PROJECT))
    Project.load().record_data_version()


def run_step(what, command, retry, env=None):
    """Run one set-up step; on failure say so and how to retry, and carry on."""
    print(f"\n==> {what}", flush=True)
    if subprocess.run(command, env=env).returncode == 0:
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
    if answers["download_model"] != "yes" or answers["local_model_path"]:
        return
    python = VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable)
    shown = str(VENV_PYTHON) if python == VENV_PYTHON else "python"
    # without .venv (no install now), this Python runs the project's package from the project folder
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")]))}
    run_step(
        f"Getting the base model {answers['base_model']}",
        [str(python), "setup/get_model.py"],
        f"{shown} setup/get_model.py",
        env,
    )


def print_next_steps(answers):
    print(f"\nProject ready: {PROJECT}\nNext: cd {PROJECT} and follow README.md")


def main():
    answers = resolve(ANSWERS)
    remove_unneeded_files(answers)
    rename_sample_columns(answers)
    record_data_version()
    install_dependencies(answers)
    download_model(answers)
    print_next_steps(answers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
