"""Choose ModelBuilder's int4 settings by measurement on one fine-tune: accuracy, size and speed side by side.

    python scripts/measure_int4.py PROJECT [--variants fp32,int4,int4-asym,k_quant_last,k_quant_mixed] [--rounds 2]

PROJECT is a rendered project after `olive run`; its merged fine-tuned model (the MergeAdapterWeights
output, found through gen-model/model/footprint.json) is exported once per variant by a
ModelBuilder-only Olive workflow into PROJECT/gen-model/int4-variants/<variant>/. Each export is
scored on the project's held-out file and timed by the project's own benchmark child
(`python -m slm.benchmark --child onnx`: every held-out row, 32 greedy tokens, end-of-sequence
ignored while timing); the rounds alternate the variants so a busy spell hits all of them.
Run it with the template's test environment (scripts/env.sh) on an otherwise idle machine.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# the settings on top of precision int4; block 32 and accuracy level 4 are the template's CPU values
COMMON = {"int4_block_size": 32, "int4_is_symmetric": True, "int4_accuracy_level": 4}
VARIANTS = {
    "fp32": {"precision": "fp32"},
    "int4": {"precision": "int4", **COMMON},
    "int4-asym": {"precision": "int4", **COMMON, "int4_is_symmetric": False},
    "k_quant_last": {"precision": "int4", **COMMON, "int4_algo_config": "k_quant_last"},
    "k_quant_mixed": {"precision": "int4", **COMMON, "int4_algo_config": "k_quant_mixed"},
}


def run(command, cwd, env):
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"ERROR: {' '.join(command)} failed in {cwd}:\n{result.stderr[-3000:]}")
    return result.stdout


def project_fact(expression, project, env):
    """A value computed by the project's own package, so paths resolve as its scripts resolve them."""
    imports = "from slm.benchmark import merged_model_dir; from slm.project import Project"
    return run([sys.executable, "-c", f"{imports}; print({expression})"], project, env).strip()


def export(project, merged, name, env):
    out = project / "gen-model/int4-variants" / name
    if (out / "model.onnx").is_file():
        return out, 0.0
    config = {
        "input_model": {"type": "HfModel", "model_path": str(merged)},
        "passes": {"builder": {"type": "ModelBuilder", "config": VARIANTS[name]}},
        "log_severity_level": 3,
        "cache_dir": str(project / "gen-model/int4-variants/olive-cache"),
        "output_dir": str(out),
    }
    config_file = project / "gen-model/int4-variants" / f"{name}.json"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")
    start = time.perf_counter()
    run([sys.executable, "-m", "olive", "run", "--config", str(config_file)], project, env)
    return out, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    project = args.project.resolve()
    names = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        sys.exit(f"ERROR: unknown variant {', '.join(unknown)}: choose from {', '.join(VARIANTS)}")
    env = {**os.environ, "OLIVE_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(project)}
    merged = (project / project_fact("merged_model_dir(Project.load().onnx_model_dir(None))", project, env)).resolve()
    eval_file = project_fact("Project.load().eval_file", project, env)
    exports = {}
    for name in names:
        exports[name], seconds = export(project, merged, name, env)
        print(f"exported {name} in {seconds:.0f} s", file=sys.stderr, flush=True)
    results = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            child = ["-m", "slm.benchmark", "--child", "onnx", "--child-model", str(exports[name])]
            child += ["--prompts", "100000", "--max-new-tokens", "32", "--device", "cpu", "--eval-file", eval_file]
            results[name].append(json.loads(run([sys.executable, *child], project, env).strip().splitlines()[-1]))
    print(f"\nmerged model: {merged}")
    print(f"{'variant':<16}{'accuracy':>10}{'MB on disk':>12}{'decode tok/s per round':>28}{'TTFT ms':>9}  settings")
    for name in names:
        runs = results[name]
        rates = " / ".join(f"{r['decode_tokens_per_s_median']:.1f}" for r in runs)
        ttft = statistics.median(r["time_to_first_token_ms_median"] for r in runs)
        settings = json.dumps({k: v for k, v in VARIANTS[name].items() if k not in COMMON or COMMON[k] != v})
        size = runs[0]["weights_on_disk_mb"]
        print(f"{name:<16}{runs[0]['score']:>10.3f}{size:>12.1f}{rates:>28}{ttft:>9.0f}  {settings}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
