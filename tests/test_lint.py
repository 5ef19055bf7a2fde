"""The template's own code (template_logic/, local_extensions.py, hooks, tests, scripts) and the
generated project's plain Python files pass ruff check and ruff format, as CI and pre-commit run them."""

import subprocess
import sys

import pytest
from conftest import TEMPLATE


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_template_code_passes_ruff(command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "--no-cache", "."], cwd=TEMPLATE, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_no_generated_module_is_over_300_lines():
    modules = (TEMPLATE / "{{cookiecutter.project_slug}}" / "slm").rglob("*.py")
    long = {path.name: n for path in modules if (n := len(path.read_text(encoding="utf-8").splitlines())) > 300}
    assert not long, f"split these by seam: {long}"
