"""Side by side: the fine-tuned model on ONNX Runtime GenAI vs the same model in PyTorch.

Run from the project root, after `olive run`:
    python inferences/benchmark.py [--prompts 20] [--max-new-tokens 32] [--device cpu|cuda]

Both engines get the same prompts (from datasets/eval.json, built with the training
template), greedy decoding, and exactly --max-new-tokens new tokens each (end-of-sequence
is ignored while timing, so both do equal work; the answer for accuracy is the text
before the first end-of-sequence). Each engine runs in its own child process so its peak
memory is its own.

  ONNX     gen-model/model/                           (ModelBuilder output)
  PyTorch  the MergeAdapterWeights output in gen-model/olive-cache/, found through
           gen-model/model/footprint.json (override with --merged-model DIR)

Writes gen-model/benchmark.json and gen-model/benchmark.png. The last line printed is
`speedup: N.Nx` (ONNX decode tokens/s divided by PyTorch decode tokens/s).
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generators import ENGINES, TextGenerator, load_tokenizer, weights_size_bytes  # noqa: E402
from task import Task, TaskError, load_olive_config, model_output_dir, normalise_label  # noqa: E402

RESULTS = Path("gen-model/benchmark.json")
CHART = Path("gen-model/benchmark.png")


def merged_model_dir(onnx_dir):
    """The merged fine-tuned PyTorch model Olive produced on the way to the ONNX model."""
    footprint = Path(onnx_dir) / "footprint.json"
    if footprint.is_file():
        for node in json.loads(footprint.read_text(encoding="utf-8")).values():
            if node.get("from_pass") == "mergeadapterweights":
                return Path(node["model_config_data"]["config"]["model_path"])
    raise TaskError(
        f"no merged model recorded in {footprint}: run `olive run --config fine-tuning/olive-config.json` "
        "(or pass --merged-model DIR)"
    )


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(engine_name, model_dir, rows, task, max_new_tokens, device):
    """Runs in the child process: time every prompt on one engine."""
    from tqdm import tqdm

    generator = TextGenerator(ENGINES[engine_name](model_dir, device), load_tokenizer(model_dir))
    engine, tokenizer = generator.engine, generator.tokenizer
    prompts = [generator.encode(task.prompt(str(row[task.input_column]), tokenizer.bos_token)) for row in rows]

    def run_one(prompt_ids):
        start = time.perf_counter()
        stamps, tokens = [], []
        for token in engine.generate_ids(prompt_ids, max_new_tokens, ignore_eos=True):
            stamps.append(time.perf_counter() - start)
            tokens.append(token)
        return stamps, tokens

    run_one(prompts[0])  # warm-up: first-call allocations and graph optimisation
    first_token, decode_rates, latencies, correct = [], [], [], 0
    timed = tqdm(zip(rows, prompts, strict=True), total=len(rows), desc=engine.name, unit="prompt", file=sys.stderr)
    for row, prompt_ids in timed:
        stamps, tokens = run_one(prompt_ids)
        first_token.append(stamps[0])
        latencies.append(stamps[-1])
        decode_rates.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
        answer_ids = tokens[: next((i for i, t in enumerate(tokens) if t in generator.eos_ids), len(tokens))]
        answer = tokenizer.decode(answer_ids).strip().split("\n")[0]
        correct += normalise_label(answer) == normalise_label(str(row[task.output_column]))
    return {
        "engine": engine.name,
        "model_dir": str(model_dir),
        "tokens_per_answer": max_new_tokens,
        "time_to_first_token_ms_median": 1000 * statistics.median(first_token),
        "decode_tokens_per_s_median": statistics.median(decode_rates),
        "latency_s_median": statistics.median(latencies),
        "latency_s_p90": percentile(latencies, 0.9),
        # ru_maxrss is in KiB on Linux
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "weights_on_disk_mb": weights_size_bytes(model_dir) / 2**20,
        "accuracy": correct / len(rows),
        "prompts": len(rows),
    }


def run_child(engine_name, model_dir, args):
    command = [
        sys.executable,
        __file__,
        "--child",
        engine_name,
        "--child-model",
        str(model_dir),
        "--prompts",
        str(args.prompts),
        "--max-new-tokens",
        str(args.max_new_tokens),
        "--device",
        args.device,
        "--eval-file",
        str(args.eval_file),
    ]
    print(f"measuring {engine_name} on {model_dir} ...", file=sys.stderr, flush=True)
    # stdout carries the result; stderr (progress, errors) goes straight to the terminal
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise TaskError(f"the {engine_name} measurement failed (its error is printed above)")
    return json.loads(result.stdout.strip().splitlines()[-1])


ROWS = [
    ("time to first token (ms, median)", "time_to_first_token_ms_median", "{:.1f}"),
    ("decode tokens/s (median)", "decode_tokens_per_s_median", "{:.1f}"),
    ("latency per answer (s, median)", "latency_s_median", "{:.3f}"),
    ("latency per answer (s, p90)", "latency_s_p90", "{:.3f}"),
    ("peak resident memory (MB)", "peak_rss_mb", "{:.0f}"),
    ("weights on disk (MB)", "weights_on_disk_mb", "{:.1f}"),
    ("accuracy on the prompts", "accuracy", "{:.3f}"),
]


def print_table(onnx, torch):
    print(f"{'':34}{'ONNX Runtime GenAI':>20}{'PyTorch':>12}")
    for label, key, fmt in ROWS:
        print(f"{label:34}{fmt.format(onnx[key]):>20}{fmt.format(torch[key]):>12}")


def draw_chart(onnx, torch, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [row for row in ROWS if row[1] != "latency_s_p90"]
    figure, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.4))
    for axis, (label, key, fmt) in zip(axes, shown, strict=True):
        values = [onnx[key], torch[key]]
        bars = axis.bar(["ONNX Runtime", "PyTorch"], values, color=["#2b7bba", "#b0b0b0"])
        axis.bar_label(bars, labels=[fmt.format(v) for v in values], fontsize=8)
        axis.set_title(label, fontsize=9)
        axis.tick_params(labelsize=8)
    figure.suptitle(f"{onnx['prompts']} prompts, {onnx['tokens_per_answer']} new tokens each, greedy")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Benchmark ONNX Runtime GenAI against PyTorch on the fine-tuned model."
    )
    parser.add_argument("--prompts", type=int, default=20, help="how many eval rows to time (default 20)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="new tokens per answer (default 32)")
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="cuda: CUDA execution provider for ONNX and torch on the GPU",
    )
    parser.add_argument("--eval-file", type=Path, default=Path("datasets/eval.json"))
    parser.add_argument("--onnx-model", type=Path, help="ONNX model folder (default: the config's output_dir)")
    parser.add_argument("--merged-model", type=Path, help="merged PyTorch model folder (default: from the footprint)")
    parser.add_argument("--child", choices=sorted(ENGINES), help=argparse.SUPPRESS)
    parser.add_argument("--child-model", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.prompts < 1 or args.max_new_tokens < 2:
            raise TaskError("--prompts must be at least 1 and --max-new-tokens at least 2")
        config = load_olive_config()
        task = Task.from_olive_config(config)
        rows = task.load_rows(args.eval_file)[: args.prompts]
        if args.child:
            result = measure(args.child, args.child_model, rows, task, args.max_new_tokens, args.device)
            print(json.dumps(result))
            return 0
        onnx_dir = args.onnx_model or model_output_dir(config)
        if not (onnx_dir / "genai_config.json").is_file():
            raise TaskError(
                f"no ONNX model in {onnx_dir}: run `olive run --config fine-tuning/olive-config.json` first"
            )
        merged_dir = args.merged_model or merged_model_dir(onnx_dir)
        if not (merged_dir / "config.json").is_file():
            raise TaskError(
                f"no merged PyTorch model in {merged_dir} (was gen-model/olive-cache/ deleted?): re-run "
                "`olive run --config fine-tuning/olive-config.json`, or pass --merged-model DIR"
            )
        onnx = run_child("onnx", onnx_dir, args)
        torch = run_child("torch", merged_dir, args)
    except TaskError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    speedup = onnx["decode_tokens_per_s_median"] / torch["decode_tokens_per_s_median"]
    summary = {
        "onnx": onnx,
        "pytorch": torch,
        "speedup_decode": speedup,
        "size_ratio": onnx["weights_on_disk_mb"] / torch["weights_on_disk_mb"],
        "settings": {"prompts": len(rows), "max_new_tokens": args.max_new_tokens, "device": args.device},
    }
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    draw_chart(onnx, torch, CHART)
    print_table(onnx, torch)
    print(f"ONNX size is {100 * summary['size_ratio']:.0f}% of the merged PyTorch weights")
    print(f"wrote {RESULTS} and {CHART}")
    print(f"speedup: {speedup:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
