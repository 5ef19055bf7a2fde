"""The adapter export against the merged export of the same LoRA run: accuracy, size and speed side by side.

    python scripts/measure_adapter.py PROJECT [--prompts 20]

PROJECT is a rendered project with export=adapter after `olive run`. The merged export of the
same trained adapter is built in the same folder by the project's own config with its passes
after the LoRA pass swapped for MergeAdapterWeights -> ModelBuilder (the template's merged
passes), so Olive reuses the LoRA run from gen-model/olive-cache/ and writes
gen-model/merged-model/. Then, in one run: `infer.py --eval` with the adapter, with
`--adapter none` left out (free-text answers), on the merged model; and the project's
benchmark (ONNX + adapter, ONNX base alone, PyTorch) with the merged model's decode speed timed
by the same benchmark child. Run it with the template's test environment (scripts/env.sh) on
an otherwise idle machine.
"""

import argparse
import json
import os
import re
import sys
from pathlib import Path

from measure_quality import run

SEARCH_KEYS = ("evaluators", "evaluator", "search_strategy", "evaluate_input_model")


def merged_config(config):
    """The project's config with the passes after LoRA swapped for the template's merged export."""
    # one recipe, the project's first (the one built when its export search is off), and no search
    config = {key: value for key, value in config.items() if key not in SEARCH_KEYS}
    builder = config["passes"]["builder"]
    builder = dict(builder[0] if isinstance(builder, list) else builder)
    builder["config"] = {k: v for k, v in builder["config"].items() if k != "int4_nodes_to_exclude"}
    config["passes"] = {"finetune": config["passes"]["finetune"], "merge": {"type": "MergeAdapterWeights"}}
    config["passes"]["builder"] = builder
    config["output_dir"] = "gen-model/merged-model"
    return config


def accuracy(output):
    return float(re.search(r"^accuracy: (\d\.\d{3})", output, re.MULTILINE).group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--prompts", type=int, default=20)
    args = parser.parse_args()
    project = args.project.resolve()
    env = {**os.environ, "PYTHONPATH": str(project), "OLIVE_DISABLE_TELEMETRY": "1"}
    config = json.loads((project / "fine-tuning/olive-config.json").read_text(encoding="utf-8"))
    if "adapter" not in config["passes"]:
        sys.exit("ERROR: PROJECT must be rendered with export=adapter and trained with olive run")
    variant = project / "gen-model/merged-config.json"
    variant.write_text(json.dumps(merged_config(config), indent=2), encoding="utf-8")
    print("building the merged export of the same LoRA run ...", file=sys.stderr, flush=True)
    run([sys.executable, "-m", "olive", "run", "--config", str(variant)], project, env)
    infer = [sys.executable, "inferences/infer.py", "--eval"]
    with_adapter = accuracy(run(infer, project, env))
    merged = accuracy(run([*infer, "--model", "gen-model/merged-model"], project, env))
    bench = ["--prompts", str(args.prompts), "--max-new-tokens", "32"]
    benchmark = run([sys.executable, "inferences/benchmark.py", *bench], project, env)
    results = json.loads((project / "gen-model/benchmark.json").read_text(encoding="utf-8"))
    merged_speed = json.loads(
        run(
            [
                sys.executable,
                "-m",
                "slm.bench.benchmark",
                "--child",
                "onnx",
                "--child-model",
                "gen-model/merged-model",
                *bench,
            ],
            project,
            env,
        ).splitlines()[-1]
    )
    adapter_mb = (project / "gen-model/model/adapter_weights.onnx_adapter").stat().st_size / 2**20
    base_mb = (project / "gen-model/model/model.onnx").stat().st_size / 2**20
    print(benchmark)
    print(f"{'':34}{'adapter export':>16}{'merged export':>16}")
    print(f"{'accuracy, all held-out rows':34}{with_adapter:>16.3f}{merged:>16.3f}")
    print(
        f"{'decode tokens/s (median)':34}{results['onnx']['decode_tokens_per_s_median']:>16.1f}"
        f"{merged_speed['decode_tokens_per_s_median']:>16.1f}"
    )
    print(f"base alone (adapter export): {results['onnx_base_alone']['decode_tokens_per_s_median']:.1f} tokens/s")
    print(f"adapter file: {adapter_mb:.1f} MB = {100 * adapter_mb / base_mb:.1f}% of model.onnx ({base_mb:.1f} MB)")
    print(f"adapter overhead: {100 * results['adapter_overhead_decode']:.0f}%")
    print(f"accuracy, adapter minus merged: {100 * (with_adapter - merged):+.1f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
