#!/usr/bin/env bash
# The template's whole test suite, end-to-end tests included, from a fresh machine:
#   bash scripts/test.sh            (extra arguments go to pytest, e.g. -m "not slow")
source "$(dirname "$0")/env.sh"
cd "$ROOT"
export OLIVE_DISABLE_TELEMETRY=1
python -m pytest -ra --durations=15 "$@"
