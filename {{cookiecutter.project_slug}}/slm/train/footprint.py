"""What `olive run` will cost on CPU, told before it starts: seconds per training step and each stage's peak memory.

The figures are measured ones (MEASURED, one row per model measured); a model measured at another size (a
scaled-down shape, a local model of the same family) gets the nearest row scaled by parameter count, and
says "estimated". `prepare.py` and `check_config.py --paths` print the forecast; they and `olive run` itself
(slm/train/olive_data.py, before any pass) refuse a run whose forecast peak is more than this machine's memory,
unless MEMORY_OVERRIDE is set in the environment.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from slm.errors import UserError

# set to 1 to run a forecast over this machine's memory anyway (swap, a better forecast of your own)
MEMORY_OVERRIDE = "SLM_IGNORE_MEMORY_FORECAST"
GIB = 2**30


@dataclass(frozen=True)
class Measured:
    model_type: str  # config.json's: a shape of the same family is scaled from this row first
    parameters: int
    seconds_per_step: float
    batch_size: int
    # each stage's peak resident memory in GiB (training, merge, export)
    peaks: dict


# Measured on a 2-core x86_64 CPU (AVX-512, AMX), 24 GiB, no GPU:
MEASURED = {
    # docs/measurements.md, "olive run at full size": scripts/measure_full_size.py, the whole olive run of a project
    # rendered with the default answers on a random-weight 32-layer Phi-3-mini (2 steps of the sample's rows,
    # bfloat16, gradient checkpointing: 6.2 s a step). Peaks of the process tree; the export: the int4
    # recipes of the export search, built one weight at a time (slm/export/int4_by_tensor.py), and their scoring
    "Phi-3-mini-4k-instruct": Measured("phi3", 3_821_079_552, 6.2, 4, {"training": 9.6, "merge": 9.0, "export": 12.4}),
    # the same for a random-weight 32-layer Phi-4-mini (its four recipes built and scored); 12 s a step here is the
    # LoRA pass's time less its two evaluations and over its two steps (checkpoint saves included)
    "Phi-4-mini-instruct": Measured("phi3", 3_836_021_760, 12.0, 4, {"training": 9.8, "merge": 8.6, "export": 13.4}),
    # seconds: the demo's olive run when the schedule was added (commit 94cef98), batch 8; peaks: the process tree of
    # the default answers' olive run, 2 steps (docs/measurements.md, "olive run at full size")
    "SmolLM2-135M-Instruct": Measured("llama", 134_515_008, 1.8, 8, {"training": 2.1, "merge": 1.2, "export": 3.1}),
}


# the template's other models, before they are downloaded (their config.json is then read): (model_type,
# parameter_count of the published config.json, scripts/phi_published.py of the template)
PUBLISHED_SHAPES = {
    "Phi-3-mini-128k-instruct": ("phi3", 3_821_079_552),
    "Phi-3.5-mini-instruct": ("phi3", 3_821_079_552),
}


# what parameter_count reads from a config.json
SHAPE_KEYS = {"hidden_size", "num_hidden_layers", "vocab_size", "num_attention_heads", "intermediate_size"}


def parameter_count(config: dict) -> int:
    """Weights of a Llama / Phi-3 decoder from its config.json: embeddings (lm_head apart unless tied) and layers."""
    hidden, layers, vocab = config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]
    head_dim = config.get("head_dim") or hidden // config["num_attention_heads"]
    kv = config.get("num_key_value_heads") or config["num_attention_heads"]
    attention = hidden * head_dim * (2 * config["num_attention_heads"] + 2 * kv)
    mlp = 3 * hidden * config["intermediate_size"]
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings") else 2)
    return embeddings + layers * (attention + mlp + 2 * hidden) + hidden


@dataclass(frozen=True)
class Forecast:
    basis: str  # the MEASURED row scaled from
    estimated: bool
    seconds_per_step: float
    batch_size: int
    peaks: dict

    def describe(self) -> str:
        how = f"estimated from {self.basis} by parameter count" if self.estimated else f"measured on {self.basis}"
        stages = ", ".join(f"{stage} {gib:.1f} GiB" for stage, gib in self.peaks.items())
        return (
            f"forecast on a 2-core CPU ({how}): {self.seconds_per_step:.0f} s per training step of {self.batch_size} "
            f"rows; peak memory {stages}"
        )


def model_shape(project) -> tuple[str | None, str | None, int | None]:
    """(the base model folder's name, its model_type and parameter count from its config.json, or None when it is
    not there yet); all None for a model Olive fetches itself inside an Azure ML job."""
    if not isinstance(project.base_model_path, str):
        return None, None, None
    folder = project.base_model_dir
    config = folder / "config.json"
    config = json.loads(config.read_text(encoding="utf-8")) if config.is_file() else {}
    if not SHAPE_KEYS <= set(config):  # not there yet, or a config.json without the shape (a stub): as published
        return folder.name, *PUBLISHED_SHAPES.get(folder.name, (None, None))
    return folder.name, config.get("model_type"), parameter_count(config)


def forecast(project) -> Forecast | None:
    """The CPU forecast for the project's model and settings; None for a model neither measured nor on disk."""
    name, model_type, parameters = model_shape(project)
    measured = MEASURED.get(name)
    if parameters is None and measured is None:
        return None
    parameters = parameters or measured.parameters
    model_type = model_type or measured.model_type
    basis = name if measured and measured.parameters == parameters else nearest(model_type, parameters)
    row = MEASURED[basis]
    scale = parameters / row.parameters
    stages = ["training", "merge", "export"] if not project.exports_adapter else ["training", "export"]
    return Forecast(
        basis=basis,
        estimated=scale != 1,
        seconds_per_step=row.seconds_per_step * scale * project.batch_size / row.batch_size,
        batch_size=project.batch_size,
        peaks={stage: row.peaks[stage] * scale for stage in stages},
    )


def nearest(model_type: str | None, parameters: int) -> str:
    """The measured row to scale from: of the same model_type first, then the nearest in parameter count."""
    return min(
        MEASURED,
        key=lambda name: (MEASURED[name].model_type != model_type, abs(MEASURED[name].parameters - parameters)),
    )


def machine_memory_gib() -> float | None:
    """This machine's total memory (Linux /proc/meminfo, else psutil when installed); None when unknown."""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024 / GIB
    try:
        import psutil
    except ImportError:
        return None
    return psutil.virtual_memory().total / GIB


# training on a GPU, whether the model runs there or on CPU (the template's device answers)
ON_A_GPU = "a GPU (device cuda, or cuda-train-cpu-run for a model that runs on CPU)"


def what_would_fit(stage: str) -> str:
    if stage == "training":
        return f"QLoRA (finetune_method qlora: a 4-bit base), {ON_A_GPU}, or a machine with more memory"
    return f"{ON_A_GPU} or a machine with more memory"


def check_fits(project, memory_gib: float | None = None) -> Forecast | None:
    """The forecast, after refusing (UserError) a CPU run whose forecast peak is more than this machine's memory.
    None for a run that trains on a GPU (its model may still run on CPU): the figures are of CPU runs."""
    if project.training_device != "cpu":
        return None
    expected = forecast(project)
    memory_gib = memory_gib or machine_memory_gib()
    if expected is None or memory_gib is None or os.environ.get(MEMORY_OVERRIDE) == "1":
        return expected
    stage, peak = max(expected.peaks.items(), key=lambda item: item[1])
    if peak > memory_gib:
        raise UserError(
            f"{project.base_model_dir.name}'s {stage} stage is forecast to peak at {peak:.1f} GiB on CPU, more than "
            f"this machine's {memory_gib:.1f} GiB: use {what_would_fit(stage)} ({MEMORY_OVERRIDE}=1 runs it anyway)"
        )
    return expected
