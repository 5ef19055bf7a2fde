"""One engine's measurement on the held-out prompts (time to first token, decode speed, latency, peak memory,
weight traffic, score), run in a child process of its own: the benchmark's engines and the export search's
decode speed (olive_eval) both call run_child with explicit settings.
"""

import json
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from slm.bench import bandwidth, llama_peer
from slm.engines import ENGINES, load_tokenizer, weights_size_bytes
from slm.errors import UserError
from slm.generation import TextGenerator, answer_line
from slm.metrics import percentile, score

# the child processes can run the llama.cpp peer too (imported only when measured)
CHILD_ENGINES = {**ENGINES, "llama": llama_peer.LlamaCppEngine}


class PeakMemory:
    """Peak resident memory of this process, sampled between prompts (psutil works on every OS)."""

    def __init__(self):
        import psutil

        self.process = psutil.Process()
        self.peak = 0

    def sample(self):
        info = self.process.memory_info()
        # Windows reports the true peak; elsewhere the samples between prompts stand for it
        self.peak = max(self.peak, getattr(info, "peak_wset", 0), info.rss)

    @property
    def megabytes(self):
        return self.peak / 2**20


def scored_ids(engine, prompt_ids, timed_ids, max_new_tokens, eos_ids, extra):
    """The answer's tokens: the timed ones up to the first end-of-sequence, or, when the engine's ignore_eos
    changes the tokens (ONNX Runtime GenAI), those of a plain, untimed run of the same prompt."""
    if engine.ignore_eos_changes_tokens:
        timed_ids = list(engine.generate_ids(prompt_ids, max_new_tokens, **extra))
    return timed_ids[: next((i for i, token in enumerate(timed_ids) if token in eos_ids), len(timed_ids))]


def measure(engine_name, model_dir, rows, task, max_new_tokens, device, adapter=None):
    """Runs in the child process: time every prompt on one engine; `adapter`: an .onnx_adapter file
    (ONNX) or a LoRA adapter folder merged into the model (PyTorch)."""
    from slm.progress import progress

    memory = PeakMemory()
    if adapter and engine_name == "torch":
        engine = CHILD_ENGINES[engine_name](model_dir, device, lora_dir=adapter)
    else:
        engine = CHILD_ENGINES[engine_name](model_dir, device)
    extra = {}
    if adapter and engine_name == "onnx":
        engine.load_adapter("adapter", adapter)
        extra["adapter"] = "adapter"
    generator = TextGenerator(engine, load_tokenizer(model_dir))
    tokenizer = generator.tokenizer
    prompts = [generator.encode(task.prompt_for_row(row, tokenizer)) for row in rows]
    one_line = task.one_line_answer

    def run_one(prompt_ids):
        start = time.perf_counter()
        stamps, tokens = [], []
        for token in engine.generate_ids(prompt_ids, max_new_tokens, ignore_eos=True, **extra):
            stamps.append(time.perf_counter() - start)
            tokens.append(token)
        return stamps, tokens

    run_one(prompts[0])  # warm-up: first-call allocations and graph optimisation
    first_token, decode_rates, latencies, answers = [], [], [], []
    memory.sample()
    for prompt_ids in progress(prompts, engine.name, "prompt"):
        stamps, tokens = run_one(prompt_ids)
        memory.sample()
        first_token.append(stamps[0])
        latencies.append(stamps[-1])
        decode_rates.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
        answer = tokenizer.decode(scored_ids(engine, prompt_ids, tokens, max_new_tokens, generator.eos_ids, extra))
        answers.append(answer_line(answer) if one_line else answer.strip())
    metric, value, _ = score(answers, [task.reference(row) for row in rows])
    decode_median = statistics.median(decode_rates)
    read_per_token, _ = bandwidth.weight_bytes_per_token(model_dir)
    return {
        "engine": engine.name,
        "model_dir": str(model_dir),
        "tokens_per_answer": max_new_tokens,
        "time_to_first_token_ms_median": 1000 * statistics.median(first_token),
        "decode_tokens_per_s_median": decode_median,
        "latency_s_median": statistics.median(latencies),
        "latency_s_p90": percentile(latencies, 0.9),
        "peak_rss_mb": memory.megabytes,
        "weights_on_disk_mb": (weights_size_bytes(model_dir) + (weights_size_bytes(adapter) if adapter else 0)) / 2**20,
        "weights_read_per_token_mb": read_per_token / 2**20,
        "cpu_threads": engine.threads,
        "decode_weight_gb_per_s": bandwidth.decode_bandwidth_gbs(read_per_token, decode_median),
        "metric": metric,
        "score": value,
        "prompts": len(rows),
    }


@dataclass(frozen=True)
class ChildSettings:
    """What a measurement's child process times: the first `prompts` rows of `eval_file`, `max_new_tokens` each."""

    prompts: int
    max_new_tokens: int
    device: str
    eval_file: Path


def run_child(engine_name, model_dir, settings: ChildSettings, adapter=None):
    """`measure` in a child process of its own (`python -m slm.bench.benchmark --child ...`), so that its peak memory
    is its own; its result dict."""
    command = [
        sys.executable,
        "-m",
        "slm.bench.benchmark",
        "--child",
        engine_name,
        "--child-model",
        str(model_dir),
        "--prompts",
        str(settings.prompts),
        "--max-new-tokens",
        str(settings.max_new_tokens),
        "--device",
        settings.device,
        "--eval-file",
        str(settings.eval_file),
        *(["--child-adapter", str(adapter)] if adapter else []),
    ]
    with_adapter = f" with {Path(adapter).as_posix()}" if adapter else ""
    print(f"measuring {engine_name} on {model_dir}{with_adapter} ...", file=sys.stderr, flush=True)
    # stdout carries the result; stderr (progress, errors) goes straight to the terminal
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise UserError(child_failure(engine_name, result.returncode))
    return json.loads(result.stdout.strip().splitlines()[-1])


ENGINE_TITLES = {
    "onnx": "the ONNX Runtime GenAI measurement",
    "torch": "the PyTorch measurement",
    "llama": "the llama.cpp peer",
}
LLAMA_NATIVE_OFF = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --force-reinstall --no-cache-dir --no-binary llama-cpp-python '
    f"llama-cpp-python=={llama_peer.PEER_VERSION}"
)


def child_failure(engine_name, returncode):
    """What to say when a measurement's child process fails: an error it printed, or the signal that killed it."""
    title = ENGINE_TITLES.get(engine_name, f"the {engine_name} measurement")
    if returncode > 0:
        return f"{title} failed (its error is printed above)"
    try:
        name, meaning = signal.Signals(-returncode).name, signal.strsignal(-returncode)
    except ValueError:
        name, meaning = f"signal {-returncode}", None
    message = f"{title} died with {name}" + (f" ({meaning.lower()})" if meaning else "")
    if name == "SIGILL" and engine_name == "llama":
        return f"{message}: build llama-cpp-python without native CPU flags: {LLAMA_NATIVE_OFF}"
    if name == "SIGILL":
        return f"{message}: a package in this environment was built for a CPU with instructions this one lacks"
    if name == "SIGKILL":
        return f"{message}: most often the out-of-memory killer (see `dmesg`)"
    return message
