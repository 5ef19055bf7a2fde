"""Choose ModelBuilder's int4 settings by measurement on one fine-tune: accuracy, size and speed side by side.

    python scripts/measure_int4.py PROJECT [--variants fp32,int4,int4-asym,k_quant_last,k_quant_mixed] [--rounds 2]
    python scripts/measure_int4.py PROJECT --variants k_quant_mixed,k_quant_mixed+threads=0,k_quant_mixed+threads=1

PROJECT is a rendered project after `olive run`; its merged fine-tuned model (the MergeAdapterWeights
output, found through gen-model/model/footprint.json) is exported once per variant (the project's
own ModelBuilder settings with the variant's change, RECIPES) by a ModelBuilder-only Olive workflow
into PROJECT/gen-model/int4-variants/<variant>/. Each export is
scored on the project's held-out file and timed by the project's own benchmark child
(`python -m slm.bench.benchmark --child onnx`: every held-out row, 32 greedy tokens, end-of-sequence
ignored while timing); the rounds alternate the variants so a busy spell hits all of them.
`VARIANT+threads=N` times VARIANT's export with N intra-op threads written into its genai_config.json
(0: ONNX Runtime's own default; without it the project's engine uses one thread per CPU).
Run it with the template's test environment (scripts/env.sh) on an otherwise idle machine.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from measure_quality import run

# What each variant changes in the project's own int4 settings (block size, symmetry and accuracy
# level as the template rendered them); fp32 replaces them.
RECIPES = {
    "fp32": None,
    "int4": {},
    "int4-asym": {"int4_is_symmetric": False},
    "k_quant_last": {"int4_algo_config": "k_quant_last"},
    "k_quant_mixed": {"int4_algo_config": "k_quant_mixed"},
}


def builder_settings(project_settings, name):
    if RECIPES[name] is None:
        return {"precision": "fp32"}
    plain = {key: value for key, value in project_settings.items() if key != "int4_algo_config"}
    return plain | {"precision": "int4"} | RECIPES[name]


def project_fact(expression, project, env):
    """A value computed by the project's own package, so paths resolve as its scripts resolve them."""
    imports = "import json; from slm.project import Project, merged_model_dir"
    return run([sys.executable, "-c", f"{imports}; print({expression})"], project, env).strip()


def export(project, merged, name, settings, env):
    out = project / "gen-model/int4-variants" / name
    if (out / "model.onnx").is_file():
        return out, 0.0
    config = {
        "input_model": {"type": "HfModel", "model_path": str(merged)},
        "passes": {"builder": {"type": "ModelBuilder", "config": settings}},
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


def with_threads(export_dir, threads):
    """A folder with the export's files (hard links) and a genai_config.json asking for `threads` threads."""
    out = export_dir.parent / f"{export_dir.name}+threads={threads}"
    shutil.rmtree(out, ignore_errors=True)  # made anew: the export may have been rebuilt since
    out.mkdir()
    for source in export_dir.iterdir():
        if source.is_file() and source.name != "genai_config.json":
            os.link(source, out / source.name)
    config = json.loads((export_dir / "genai_config.json").read_text(encoding="utf-8"))
    config["model"]["decoder"].setdefault("session_options", {})["intra_op_num_threads"] = threads
    (out / "genai_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return out


def parse_variant(name):
    """'k_quant_mixed+threads=1' -> ('k_quant_mixed', 1); 'int4' -> ('int4', None); None if malformed."""
    recipe, _, threads = name.partition("+threads=")
    if recipe not in RECIPES or (threads and not threads.isdecimal()) or (name != recipe and not threads):
        return None
    return recipe, int(threads) if threads else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--variants", default=",".join(RECIPES))
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    project = args.project.resolve()
    names = [name.strip() for name in args.variants.split(",") if name.strip()]
    variants = {name: parse_variant(name) for name in names}
    unknown = [name for name, parsed in variants.items() if parsed is None]
    if unknown:
        sys.exit(
            f"ERROR: unknown variant {', '.join(unknown)}: choose from {', '.join(RECIPES)}, "
            "each optionally with +threads=N"
        )
    env = {**os.environ, "OLIVE_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(project)}
    merged = (project / project_fact("merged_model_dir(Project.load().onnx_model_dir(None))", project, env)).resolve()
    eval_file = project_fact("Project.load().eval_file", project, env)
    # the project's first recipe (the one built when its export search is off)
    builder = "(lambda b: b[0] if isinstance(b, list) else b)(Project.load().config['passes']['builder'])['config']"
    rendered = json.loads(project_fact(f"json.dumps({builder})", project, env))
    exports = {}
    for name in names:
        recipe, threads = variants[name]
        exports[name], seconds = export(project, merged, recipe, builder_settings(rendered, recipe), env)
        print(f"exported {recipe} in {seconds:.0f} s", file=sys.stderr, flush=True)
        if threads is not None:
            exports[name] = with_threads(exports[name], threads)
    results = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            child = ["-m", "slm.bench.benchmark", "--child", "onnx", "--child-model", str(exports[name])]
            child += ["--prompts", "100000", "--max-new-tokens", "32", "--device", "cpu", "--eval-file", eval_file]
            results[name].append(json.loads(run([sys.executable, *child], project, env).strip().splitlines()[-1]))
    print(f"\nmerged model: {merged}\nthe project's ModelBuilder settings: {json.dumps(rendered)}")
    print(f"{'variant':<26}{'accuracy':>10}{'MB on disk':>12}{'decode tok/s per round':>28}{'TTFT ms':>9}  changes")
    for name in names:
        runs = results[name]
        rates = " / ".join(f"{r['decode_tokens_per_s_median']:.1f}" for r in runs)
        ttft = statistics.median(r["time_to_first_token_ms_median"] for r in runs)
        recipe = RECIPES[variants[name][0]]
        changes = json.dumps(recipe) if recipe is not None else "precision fp32"
        size = runs[0]["weights_on_disk_mb"]
        print(f"{name:<26}{runs[0]['score']:>10.3f}{size:>12.1f}{rates:>28}{ttft:>9.0f}  {changes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
