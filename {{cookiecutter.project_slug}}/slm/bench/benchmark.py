"""Side by side: the fine-tuned model on ONNX Runtime GenAI vs the same model in PyTorch
(and vs llama.cpp, when llama-cpp-python is installed).

Run from the project root, after `olive run`:
    python inferences/benchmark.py [--prompts N] [--max-new-tokens 32] [--device cpu|cuda]
                                   [--peer-quants Q4_0,Q4_1,Q4_K_M]

Both engines get the same prompts (the held-out rows, every one of them when there are at
most 300, built exactly as in training), greedy decoding, and exactly --max-new-tokens new tokens each (end-of-sequence
is ignored while timing, so both do equal work; the answer scored is the text before the first
end-of-sequence, from an untimed plain run on ONNX Runtime GenAI, whose way of ignoring it changes
the tokens after the answer). Each engine runs in its own child process so its peak
memory is its own.

  ONNX     gen-model/model/                           (ModelBuilder output)
  PyTorch  the MergeAdapterWeights output in gen-model/olive-cache/, found through
           gen-model/model/footprint.json (override with --merged-model DIR); in an adapter
           export, the base model with the LoRA pass's adapter merged in PyTorch
  ONNX, base alone   in an adapter export: the same ONNX model without the adapter, for
           `adapter overhead: N%` (how much slower decoding is with the adapter)
  llama.cpp the same merged model converted to GGUF (gen-model/llama-peer/<QUANT>/), CPU only;
           skipped with a one-line hint when llama-cpp-python is not installed

On CPU every engine computes with one thread per CPU this process may run on (ONNX Runtime: unless
genai_config.json sets intra_op_num_threads); the table's last row shows each engine's count.

Each engine's row also shows the bytes of weights read per generated token and the GB/s
that makes at its decode speed, beside a memory-bandwidth probe of this machine.

Writes gen-model/benchmark.json and gen-model/benchmark.png. The last line printed is
`speedup: N.Nx` (ONNX decode tokens/s divided by PyTorch decode tokens/s).
"""

import argparse
import json
import sys
from pathlib import Path

from slm.bench import bandwidth, llama_peer
from slm.bench.measure import CHILD_ENGINES, ChildSettings, measure, run_child
from slm.data import load_rows
from slm.errors import UserError, cli
from slm.export import search_report
from slm.project import Project, merged_model_on_disk, trained_adapter_dir

RESULTS = Path("gen-model/benchmark.json")
CHART = Path("gen-model/benchmark.png")
# the whole held-out file is timed by default up to this many rows
ALL_ROWS_UP_TO = 300
DEFAULT_PROMPTS = 20
ROWS = [
    ("time to first token (ms, median)", "time_to_first_token_ms_median", "{:.1f}"),
    ("decode tokens/s (median)", "decode_tokens_per_s_median", "{:.1f}"),
    ("latency per answer (s, median)", "latency_s_median", "{:.3f}"),
    ("latency per answer (s, p90)", "latency_s_p90", "{:.3f}"),
    ("peak resident memory (MB)", "peak_rss_mb", "{:.0f}"),
    ("weights on disk (MB)", "weights_on_disk_mb", "{:.1f}"),
    ("weights read per token (MB)", "weights_read_per_token_mb", "{:.1f}"),
    ("decode weight traffic (GB/s)", "decode_weight_gb_per_s", "{:.1f}"),
    ("score on the prompts (accuracy or token F1)", "score", "{:.3f}"),
    ("CPU threads (0: the runtime's default)", "cpu_threads", "{}"),
]


def print_table(results):
    """results: [(column title, result dict)] in display order."""
    widths = [max(12, len(title) + 2) for title, _ in results]
    print(f"{'':44}" + "".join(f"{title:>{w}}" for (title, _), w in zip(results, widths, strict=True)))
    for label, key, fmt in ROWS:
        cells = "".join(
            f"{'-' if r.get(key) is None else fmt.format(r[key]):>{w}}"
            for (_, r), w in zip(results, widths, strict=True)
        )
        print(f"{label:44}{cells}")


CHART_KEYS = {
    "time_to_first_token_ms_median",
    "decode_tokens_per_s_median",
    "latency_s_median",
    "peak_rss_mb",
    "weights_on_disk_mb",
    "score",
}


def draw_chart(results, path):
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no figure kept alive

    shown = [row for row in ROWS if row[1] in CHART_KEYS]
    colours = ["#2b7bba", "#b0b0b0", "#e08a2c", "#f0b45c", "#c4661a", "#7a4a1a"]
    rows, columns = -(-len(shown) // 3), 3  # a grid read at a glance (one row of six panels was 3,630 px wide)
    figure = Figure(figsize=(max(3.2, 0.9 * len(results) + 1) * columns, 3.4 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis, (label, key, fmt) in zip(axes.flat, shown, strict=False):
        values = [r[key] for _, r in results]
        bars = axis.bar([title for title, _ in results], values, color=colours[: len(results)])
        axis.bar_label(bars, labels=[fmt.format(v) for v in values], fontsize=8)
        axis.margins(y=0.12)  # room for the tallest bar's label
        axis.set_title(label, fontsize=9)
        axis.tick_params(labelsize=7)
        axis.tick_params(axis="x", labelrotation=30)
    first = results[0][1]
    figure.suptitle(f"{first['prompts']} prompts, {first['tokens_per_answer']} new tokens each, greedy")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def peer_quants(text):
    quants = [q.strip().upper() for q in text.split(",") if q.strip()]
    for quant in quants:
        llama_peer.quant_ftype(quant)  # an unknown name stops here with the list of known ones
    return quants


def measure_peers(quants, merged_dir, settings):
    """[(title, result)] for each llama.cpp quantization; [] (and a hint) when the peer is absent."""
    if not quants:
        return []
    if settings.device != "cpu":
        print("llama.cpp peer skipped: it is measured on CPU only (--device cpu)", file=sys.stderr)
        return []
    if not llama_peer.peer_available():
        print(llama_peer.PEER_HINT, file=sys.stderr)
        return []
    results = []
    for quant in quants:
        print(f"converting the merged model to GGUF {quant} ...", file=sys.stderr, flush=True)
        folder = llama_peer.convert_to_gguf(merged_dir, llama_peer.PEER_DIR, quant)
        results.append((f"llama.cpp {quant}", run_child("llama", folder, settings)))
    return results


def parse_args(argv, project):
    parser = argparse.ArgumentParser(
        description="Benchmark ONNX Runtime GenAI against PyTorch on the fine-tuned model."
    )
    parser.add_argument(
        "--prompts",
        type=int,
        help=f"how many held-out rows to time (default: all of them up to {ALL_ROWS_UP_TO}, else {DEFAULT_PROMPTS})",
    )
    parser.add_argument("--max-new-tokens", type=int, default=32, help="new tokens per answer (default 32)")
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default=project.device,
        help="cuda: CUDA provider for ONNX and torch on the GPU (default: the device the Olive config targets)",
    )
    parser.add_argument("--eval-file", type=Path, default=project.eval_file)
    parser.add_argument("--onnx-model", type=Path, help="ONNX model folder (default: the config's output_dir)")
    parser.add_argument("--merged-model", type=Path, help="merged PyTorch model folder (default: from the footprint)")
    parser.add_argument(
        "--peer-quants",
        default="Q4_0,Q4_1,Q4_K_M",
        help="llama.cpp quantizations to compare when llama-cpp-python is installed ('' for none)",
    )
    parser.add_argument("--child", choices=sorted(CHILD_ENGINES), help=argparse.SUPPRESS)
    parser.add_argument("--child-model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-adapter", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


@cli
def main(argv=None):
    project = Project.load()
    args = parse_args(argv, project)
    if (args.prompts is not None and args.prompts < 1) or args.max_new_tokens < 2:
        raise UserError("--prompts must be at least 1 and --max-new-tokens at least 2")
    task = project.task
    rows = load_rows(args.eval_file, task)
    if args.prompts is None:
        args.prompts = len(rows) if len(rows) <= ALL_ROWS_UP_TO else DEFAULT_PROMPTS
    rows = rows[: args.prompts]
    if args.child:
        result = measure(args.child, args.child_model, rows, task, args.max_new_tokens, args.device, args.child_adapter)
        print(json.dumps(result))
        return 0
    onnx_dir = project.onnx_model_dir(args.onnx_model)
    adapter = project.model_adapter(args.onnx_model)
    rerun = f"re-run `{project.olive_run}`, or pass --merged-model DIR"
    lora_dir = None
    if args.merged_model or not adapter:
        merged_dir = merged_model_on_disk(onnx_dir, args.merged_model)
    else:
        merged_dir, lora_dir = trained_adapter_dir(onnx_dir)
        if not (merged_dir / "config.json").is_file():
            raise UserError(f"no base model in {merged_dir.as_posix()}: run `python setup/get_model.py`")
        if not (lora_dir / "adapter_config.json").is_file():
            raise UserError(f"no LoRA adapter in {lora_dir.as_posix()} (was gen-model/olive-cache/ deleted?): {rerun}")
    quants = peer_quants(args.peer_quants)
    if lora_dir and quants:
        if llama_peer.peer_available():
            print("llama.cpp peer skipped: it converts a merged model; pass --merged-model DIR", file=sys.stderr)
        quants = []
    settings = ChildSettings(args.prompts, args.max_new_tokens, args.device, args.eval_file)
    onnx = run_child("onnx", onnx_dir, settings, adapter)
    base_alone = run_child("onnx", onnx_dir, settings) if adapter else None
    torch = run_child("torch", merged_dir, settings, lora_dir)
    peers = measure_peers(quants, merged_dir, settings)
    speedup = onnx["decode_tokens_per_s_median"] / torch["decode_tokens_per_s_median"]
    summary = {
        "onnx": onnx,
        "onnx_base_alone": base_alone,
        "pytorch": torch,
        "speedup_decode": speedup,
        "size_ratio": onnx["weights_on_disk_mb"] / torch["weights_on_disk_mb"],
        "llama_cpp": {title.split()[-1]: result for title, result in peers},
        "memory_bandwidth_probe_gb_per_s": bandwidth.probe_memory_bandwidth(),
        "settings": {
            "prompts": len(rows),
            "max_new_tokens": args.max_new_tokens,
            "device": args.device,
        },
    }
    if adapter:  # how much slower decoding is with the adapter than the base model alone
        summary["adapter_overhead_decode"] = (
            1 - onnx["decode_tokens_per_s_median"] / base_alone["decode_tokens_per_s_median"]
        )
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    onnx_title = "ONNX + adapter" if adapter else "ONNX Runtime GenAI"
    table = [(onnx_title, onnx), *([("ONNX base alone", base_alone)] if adapter else []), ("PyTorch", torch), *peers]
    draw_chart(table, CHART)
    print_table(table)
    if adapter:
        print(f"adapter file: {adapter.as_posix()}, {adapter.stat().st_size / 2**20:.1f} MB")
        overhead = 100 * summary["adapter_overhead_decode"]
        print(f"adapter overhead: {overhead:.0f}% (decode tokens/s with the adapter against the base alone)")
    print("\n".join(search_report.export_cost_lines(onnx_dir, onnx_title, onnx, torch)))
    print(f"ONNX size is {100 * summary['size_ratio']:.0f}% of the merged PyTorch weights")
    probe = summary["memory_bandwidth_probe_gb_per_s"]
    print(f"memory bandwidth probe (numpy copy, read+write): {probe:.1f} GB/s on this machine")
    for title, result in peers:
        ratio = onnx["decode_tokens_per_s_median"] / result["decode_tokens_per_s_median"]
        print(f"ONNX decode is {ratio:.2f}x {title}")
    print(f"wrote {RESULTS.as_posix()} and {CHART.as_posix()}")
    print(f"speedup: {speedup:.1f}x")
    return 0


if __name__ == "__main__":  # the child processes run this module directly
    sys.exit(main())
