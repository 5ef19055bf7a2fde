"""The GPU check: a full-size Phi fine-tuned by `olive run` on an NVIDIA GPU (LoRA, QLoRA), and the GPU-trained
fine-tune exported for CPU, measured in one table.

    python scripts/gpu_check.py --work DIR --tokenizer-from SMOLLM2_DIR [--model MODEL] [--device cuda]
        [--layers N] [--steps 12] [--runs lora,qlora,lora-cpu] [--no-export] [--peak-tflops T] [--out FILE.json]

The model is a random-weight one of MODEL's published shape (scripts/phi_shapes.py; the full 32 layers unless
--layers), written to DIR once. Each run renders the template with the default answers but `base_model` MODEL,
`local_model_path` that model, `__max_steps` --steps and `__early_stopping_patience` 0 (every step runs), trains on
rows that fill `max_seq_len` (the sample's phrases are 20-40 tokens, too few to keep a GPU busy) with 8 of the
sample's rows as the validation rows, and runs `olive run` as a user runs it (scripts/measure_full_size.py's run,
its stages cut by Olive's log):
- lora:     `device` --device (cuda): LoRA in bfloat16, merged, ModelBuilder int4 for that device;
- qlora:    the same with QLoRA (the nf4 base computing in bfloat16);
- lora-cpu: `device=cuda-train-cpu-run`, in the lora run's folder when it ran (Olive then takes the LoRA and merge
            passes from its cache: the same fine-tune): the int4 recipes built for CPU and the export search.
The last run that exports in a folder is then checked as tests/test_real_shapes.py checks a real shape
(tests/shape_fidelity.py): ModelBuilder's fp32 export of the merged model against the merged model in PyTorch,
largest logit difference within LOGIT_TOLERANCE, and the int4 export's greedy / top-5 agreement with fp32 (CPU
exports only: a CUDA build computes in fp16 and the CPU execution provider cannot run it).

Inside `olive run`, SLM_TRAINING_METER (the project's slm/train/training_meter.py) times each training step and
counts its tokens, and reads `torch.cuda.max_memory_allocated()` at the end of training. --no-export stops each run
after the merge (no onnxruntime-genai needed: bitsandbytes and onnxruntime-genai do not fit one device call).
Nothing is downloaded. How a session runs it on the lent GPU: CONTRIBUTING.md, "On a GPU".
"""

import argparse
import contextlib
import importlib
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import measure_full_size as full_size

SCRIPTS = Path(__file__).resolve().parent
CONFIG = "fine-tuning/olive-config.json"
FIDELITY = SCRIPTS.parent / "tests" / "shape_fidelity.py"
sys.path.insert(0, str(FIDELITY.parent))
from shape_fidelity import LOGIT_TOLERANCE  # noqa: E402

RUNS = {  # name: (finetune_method, device answer; None: --device)
    "lora": ("lora", None),
    "qlora": ("qlora", None),
    "lora-cpu": ("lora", "cuda-train-cpu-run"),
}
WARMUP_STEPS = 2  # left out of the step figures: the first steps include the kernels' first launches
TRAINING_ROWS = 64
VALIDATION_ROWS = 8
ANSWER_ROOM = 32  # tokens of max_seq_len left for the template's text and the answer
# dense bfloat16 tensor-core peaks of the datasheets, TFLOP/s (the first name found in the device's name wins)
BF16_PEAK_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "L4": 121.0}
MFU_COUNTED = (
    "MFU = 6 x N x tokens/s / the GPU's dense bf16 peak; N = the weights each trained token is multiplied by: the "
    "base model's parameters (config.json) less its input embedding (a lookup; tied embeddings counted once, as "
    "lm_head) plus the LoRA weights; tokens = the attention mask's ones (no padding); attention's score and value "
    "products, gradient checkpointing's recomputed forward and the frozen weights' skipped weight gradients are not "
    "counted"
)


def answers(args, method, device):
    pairs = {"finetune_method": method, "device": device or args.device, "__early_stopping_patience": "0"}
    return [*(f"{key}={value}" for key, value in pairs.items()), *args.answer]


def project_import(project: Path, module: str):
    """A module of a rendered project's slm package (the same code in every project rendered here)."""
    if str(project) not in sys.path:
        sys.path.insert(0, str(project))
    return importlib.import_module(module)


def write_rows(project: Path, model_dir: Path) -> None:
    """Training rows of max_seq_len tokens from the sample's own words, 8 sample rows to validate on; the data
    version recorded as the post-generation hook records it."""
    from transformers import AutoTokenizer

    config = json.loads((project / CONFIG).read_text(encoding="utf-8"))
    max_seq_len = config["data_configs"][0]["pre_process_data_config"]["max_seq_len"]
    sample = json.loads((project / "datasets/train.json").read_text(encoding="utf-8"))
    words = " ".join(row["phrase"] for row in sample).split()
    labels = sorted({row["tone"] for row in sample})
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    generator = random.Random(0)
    rows = []
    for _ in range(TRAINING_ROWS):
        text = " ".join(generator.choice(words) for _ in range(2 * max_seq_len))
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][: max_seq_len - ANSWER_ROOM]
        rows.append({"phrase": tokenizer.decode(ids), "tone": generator.choice(labels)})
    (project / "datasets/train.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    validation = json.loads((project / "datasets/validation.json").read_text(encoding="utf-8"))[:VALIDATION_ROWS]
    (project / "datasets/validation.json").write_text(json.dumps(validation, indent=1), encoding="utf-8")
    record_data_version(project)


def record_data_version(project: Path) -> None:
    with contextlib.chdir(project):
        project_import(project, "slm.project").Project.load().record_data_version()


def without_export(project: Path) -> None:
    """The config stopped after the merge: the builder passes and the export search left out."""
    path = project / CONFIG
    config = json.loads(path.read_text(encoding="utf-8"))
    kept = {"LoRA", "QLoRA", "MergeAdapterWeights"}
    config["passes"] = {name: entry for name, entry in config["passes"].items() if entry.get("type") in kept}
    for key in ("evaluators", "evaluator", "search_strategy", "evaluate_input_model"):
        config.pop(key, None)
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def prepare(args, run, model_dir, projects):
    """The run's project folder: rendered (lora-cpu: the lora folder with the cuda-train-cpu-run config)."""
    method, device = RUNS[run]
    render_args = argparse.Namespace(**{**vars(args), "work": args.work / run, "answer": answers(args, method, device)})
    render_args.work.mkdir(parents=True, exist_ok=True)
    rendered = full_size.render(render_args, model_dir)
    if run == "lora-cpu" and "lora" in projects:
        project = projects["lora"]
        shutil.copyfile(rendered / CONFIG, project / CONFIG)
        record_data_version(project)
    else:
        project = rendered
        write_rows(project, model_dir)
    if args.no_export:
        without_export(project)
    return project


def step_figures(meter_file: Path, trained_path: int, peak_tflops: float | None) -> dict:
    if not meter_file.is_file():
        return {}
    meter = json.loads(meter_file.read_text(encoding="utf-8"))
    seconds, tokens = meter["step_seconds"][WARMUP_STEPS:], meter["step_tokens"][WARMUP_STEPS:]
    if not seconds:
        return {"meter": meter}
    tokens_per_second = sum(tokens) / sum(seconds)
    parameters = trained_path + (meter["trainable_parameters"] or 0)
    mfu = 6 * parameters * tokens_per_second / (peak_tflops * 1e12) if peak_tflops else None
    return {
        "meter": meter,
        "seconds_per_step": statistics.median(seconds),
        "tokens_per_step": statistics.median(tokens),
        "tokens_per_second": tokens_per_second,
        "peak_gpu_gib": meter["peak_gpu_bytes"] / full_size.GIB if meter["peak_gpu_bytes"] else None,
        "mfu_parameters": parameters,
        "mfu": mfu,
    }


def trained_path_parameters(project: Path, model_dir: Path) -> int:
    """The base model's weights each token is multiplied by: all of them but the input embedding (a lookup)."""
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    count = project_import(project, "slm.train.footprint").parameter_count(config)
    return count if config.get("tie_word_embeddings") else count - config["vocab_size"] * config["hidden_size"]


def peak_tflops(args) -> float | None:
    if args.peak_tflops or args.device != "cuda":
        return args.peak_tflops
    import torch

    name = torch.cuda.get_device_name() if torch.cuda.is_available() else ""
    return next((peak for key, peak in BF16_PEAK_TFLOPS.items() if key in name), None)


def fidelity(project: Path, model_dir: Path, searched_for_cpu: bool, work: Path) -> dict:
    """tests/shape_fidelity.py on this project's export: fp32 against the merged model, int4 against fp32 (CPU)."""
    exported = project / "gen-model/model"
    merged = project_import(project, "slm.project").merged_model_dir(exported)
    merged = merged if merged.is_absolute() else project / merged
    fp32, cache = work / "fp32-export", work / "fp32-builder-cache"
    shutil.rmtree(fp32, ignore_errors=True)
    int4 = exported if searched_for_cpu else Path("none")
    command = [sys.executable, str(FIDELITY), "compare", str(merged), str(fp32), str(int4), str(model_dir)]
    start = time.perf_counter()
    compared = subprocess.run([*command, "--export-fp32", str(cache)], capture_output=True, text=True, cwd=project)
    if compared.returncode != 0:
        return {"error": compared.stderr.strip().splitlines()[-1] if compared.stderr.strip() else "failed"}
    figures = json.loads(compared.stdout.strip().splitlines()[-1])
    figures["seconds"] = time.perf_counter() - start
    figures["within_tolerance"] = max(figures["difference"], figures["far_difference"]) <= LOGIT_TOLERANCE
    return figures


def cached_passes(log_path: Path) -> set[str]:
    """The pass runs Olive took from its cache ("Loaded model from cache" after "Running pass"), labelled as
    measure_full_size.stage_table labels its stages."""
    cached, counts, running = set(), {}, None
    for line in log_path.read_text(encoding="utf-8").splitlines():
        if started := full_size.STARTED.search(line):
            counts[started.group(1)] = counts.get(started.group(1), 0) + 1
            running = f"{started.group(1)} #{counts[started.group(1)]}"
        elif running and "Loaded model from cache" in line:
            cached.add(running)
        elif full_size.FINISHED.search(line):
            running = None
    return cached


def stage_seconds(rows, cached: set[str], name: str) -> float | None:
    """The wall time of the pass `name`'s runs; None when Olive took every one from its cache (or none ran)."""
    runs = [(label, wall) for label, wall, _ in rows if label.startswith(f"{name} #")]
    ran = [wall for label, wall in runs if label not in cached]
    return sum(ran) if ran else None


def one_run(args, run, model_dir, projects, peak) -> dict:
    project = prepare(args, run, model_dir, projects)
    projects[run] = project
    meter_file = args.work / f"{run}-meter.json"
    meter_file.unlink(missing_ok=True)
    env = {"SLM_TRAINING_METER": str(meter_file)}
    log = args.work / f"{run}-olive-run.log"
    code, marks, samples = full_size.run_olive(project, env, log)
    rows, cached = full_size.stage_table(marks, samples), cached_passes(log)
    config = json.loads((project / CONFIG).read_text(encoding="utf-8"))
    builder = config["passes"].get("builder")
    searched_for_cpu = "search_strategy" in config
    result = {
        "run": run,
        "device": RUNS[run][1] or args.device,
        "exit": code,
        "seconds": marks[-1][0],
        "stages": rows,
        "cached": sorted(cached),
        "training_seconds": stage_seconds(rows, cached, "finetune"),
        "merge_seconds": stage_seconds(rows, cached, "merge"),
        "export_seconds": stage_seconds(rows, cached, "builder"),
        "search_seconds": sum(wall for label, wall, _ in rows if label.startswith("after builder")),
        "recipes": len(builder) if isinstance(builder, list) else int(builder is not None),
        **step_figures(meter_file, trained_path_parameters(project, model_dir), peak),
    }
    if run == "lora" and "lora-cpu" in args.runs:
        result["fidelity"] = {"note": "the same fine-tune: lora-cpu"}
    elif code == 0 and not args.no_export:
        result["fidelity"] = fidelity(project, model_dir, searched_for_cpu, args.work / run)
    return result


def cell(value, form="{:.2f}", missing="n/a"):
    return missing if value is None else form.format(value)


SECONDS = ("{:.0f} s", "cached")  # a stage's wall time, or Olive took it from its cache


def table(results) -> str:
    lines = [
        "| run | device | exit | s/step | tokens/step | tokens/s | peak GPU | MFU | training | merge | export "
        "(recipes) | fp32 vs merged (<= 1e-3) | int4 vs fp32 greedy / top-5 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        check = r.get("fidelity") or {}
        difference = (
            f"{max(check['difference'], check['far_difference']):.1e} ({'ok' if check['within_tolerance'] else 'FAIL'})"
            if "difference" in check
            else check.get("error") or check.get("note") or "not run"
        )
        agreement = f"{check['greedy']:.2f} / {check['top5']:.2f}" if check.get("greedy") is not None else "n/a"
        export = f"{cell(r['export_seconds'], *SECONDS)} ({r['recipes']})" if r["recipes"] else "not run"
        if r["search_seconds"]:
            export += f" + search {r['search_seconds']:.0f} s"
        lines.append(
            f"| {r['run']} | {r['device']} | {r['exit']} | {cell(r.get('seconds_per_step'))} | "
            f"{cell(r.get('tokens_per_step'), '{:.0f}')} | {cell(r.get('tokens_per_second'), '{:.0f}')} | "
            f"{cell(r.get('peak_gpu_gib'), '{:.1f} GiB')} | {cell(r.get('mfu'), '{:.1%}')} | "
            f"{cell(r['training_seconds'], *SECONDS)} | {cell(r['merge_seconds'], *SECONDS)} | {export} | "
            f"{difference} | {agreement} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for the model, the projects and the logs")
    parser.add_argument("--tokenizer-from", type=Path, required=True, help="a folder with SmolLM2's tokenizer.json")
    parser.add_argument("--model", choices=full_size.MODELS, default=full_size.MODELS[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="the lora and qlora runs' device")
    parser.add_argument("--layers", type=int, help="fewer layers than the published 32 (a trial)")
    parser.add_argument("--steps", type=int, default=12, help="training steps of each run (__max_steps)")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated, of {', '.join(RUNS)}")
    parser.add_argument("--no-export", action="store_true", help="stop each olive run after the merge")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak (default: by its name)")
    parser.add_argument("--answer", action="append", default=[], help="KEY=VALUE: another template answer")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    args.runs = args.runs.split(",")
    if unknown := sorted(set(args.runs) - set(RUNS)):
        parser.error(f"unknown runs {unknown}: choose from {', '.join(RUNS)}")
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    args.set, args.template = [], full_size.TEMPLATE  # what measure_full_size.render reads besides the answers
    start = time.perf_counter()
    model_dir = full_size.base_model(args)
    print(f"model {model_dir} ready after {time.perf_counter() - start:.0f} s", flush=True)
    peak, projects, results = peak_tflops(args), {}, []
    for run in (name for name in RUNS if name in args.runs):  # lora before lora-cpu, which reuses its folder
        result = one_run(args, run, model_dir, projects, peak)
        results.append(result)
        print(f"{run}: exit {result['exit']} after {result['seconds']:.0f} s", flush=True)
    layers = args.layers or 32
    print(f"\n{args.model}, {layers} of 32 layers, random weights; {args.steps} steps a run", end="")
    print(f" (the first {WARMUP_STEPS} left out of the step figures)")
    print(table(results))
    print(MFU_COUNTED + (f"; peak {peak} TFLOP/s" if peak else "; no peak known for this device (--peak-tflops)"))
    print(f"whole check: {time.perf_counter() - start:.0f} s")
    if args.out:
        args.out.write_text(json.dumps({"model": args.model, "layers": layers, "results": results}, indent=2))
    return max((r["exit"] for r in results), default=0)


if __name__ == "__main__":
    sys.exit(main())
