"""Create the project's virtual environment (.venv), install the pinned stack and this project's code into it.

Run from the project root:  python setup/install.py

torch is installed first, on its own, at the tested version: a package that asks for a
bare `torch` would otherwise pull whatever build is newest. Set TORCH_INDEX_URL to choose
where torch comes from (for a small CPU-only build on Linux:
TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu). Re-running is safe: pip skips
what is already installed. Last, the project's own package (slm/, which the scripts in
datasets/, fine-tuning/ and inferences/ run) is installed editable, so edits to it take
effect at once. Uses only the standard library: it runs before anything is installed.
"""

import os
import subprocess
import sys
import venv
from pathlib import Path

VENV = Path(".venv")
REQUIREMENTS = Path("setup/requirements.txt")
RETRY = "python setup/install.py"


def venv_python(venv_dir=VENV):
    return venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def torch_requirement(requirements=REQUIREMENTS):
    for line in requirements.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("torch=="):
            return line.strip()
    raise SystemExit(f"ERROR: {requirements} pins no torch version; restore the torch== line")


def install_commands(python, requirements=REQUIREMENTS):
    torch_command = [str(python), "-m", "pip", "install", torch_requirement(requirements)]
    if os.environ.get("TORCH_INDEX_URL"):
        torch_command += ["--index-url", os.environ["TORCH_INDEX_URL"]]
    return [
        torch_command,
        [str(python), "-m", "pip", "install", "-r", str(requirements)],
        [str(python), "-m", "pip", "install", "--no-deps", "-e", "."],
    ]


def main():
    if not venv_python().exists():
        print(f"Creating virtual environment {VENV}/")
        venv.create(VENV, with_pip=True)
    for command in install_commands(venv_python()):
        print("+", " ".join(command), flush=True)
        if subprocess.run(command).returncode != 0:
            print(f"ERROR: `{' '.join(command)}` failed (see pip's message above).", file=sys.stderr)
            print(f"Retry from the project root: {RETRY}", file=sys.stderr)
            return 1
    activate = rf"{VENV}\Scripts\activate" if os.name == "nt" else f"source {VENV}/bin/activate"
    print(f"Installed. Use {venv_python()} (or activate the environment: {activate})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
