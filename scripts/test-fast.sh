#!/usr/bin/env bash
# The fast tier: the template's tests that need only its own tools (requirements-dev.txt: no torch,
# no Olive, no ONNX Runtime), in their own virtual environment .venv-fast; under 2 minutes.
#   bash scripts/test-fast.sh       (extra arguments go to pytest)
# It leaves out the tests marked slow (end-to-end) and stack (they import the generated project's
# pinned stack); bash scripts/test.sh runs everything.
VENV="${VENV_FAST:-$(cd "$(dirname "$0")/.." && pwd)/.venv-fast}"
TOOLS_ONLY=1
source "$(dirname "$0")/env.sh"
cd "$ROOT"
python -m pytest -m "not slow and not stack" -q --durations=5 "$@"
