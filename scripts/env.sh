# Sourced by test.sh, test-fast.sh and demo.sh: create (or reuse) a virtual environment with the
# template's tools and, unless TOOLS_ONLY=1 (the fast tier), the generated project's pinned CPU stack.
# torch goes first and alone: a bare `torch` requirement from a dependency would
# otherwise pull the newest (multi-GB CUDA) build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv-dev}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
if [ "${TOOLS_ONLY:-0}" = 1 ]; then
  python -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements-dev.txt"
  return 0
fi
STACK="$VENV/stack-requirements.txt"
# the generated project's pin list, from the template's own logic; the azureml packages too:
# the template tests validate the Azure ML job offline
PYTHONPATH="$ROOT" python -c 'from template_logic.stack import pip_requirements; print("\n".join(pip_requirements("cpu", ["tools", "azureml"])))' > "$STACK"
echo "==> installing torch, the pinned stack and the test tools into $VENV"
python -m pip install --quiet --disable-pip-version-check "$(head -n 1 "$STACK")"
python -m pip install --quiet --disable-pip-version-check -r "$STACK" -r "$ROOT/requirements-dev.txt"
