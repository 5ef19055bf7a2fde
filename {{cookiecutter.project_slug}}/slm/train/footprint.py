"""What `olive run` will cost on CPU, told before it starts: seconds per training step and each stage's peak memory.

The figures are measured ones (MEASURED, one row per model measured); a model measured at another size (a
scaled-down shape, a local model of the same family) gets the nearest row scaled by parameter count, and
says "estimated". `prepare.py` and `check_config.py --paths` print the forecast; they and `olive run` itself
(slm/train/olive_data.py, before any pass) refuse a run whose forecast peak is more than this machine's memory,
unless MEMORY_OVERRIDE is set in the environment.
"""

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from slm.errors import UserError

# set to 1 to run a forecast over this machine's memory anyway (swap, a better forecast of your own)
MEMORY_OVERRIDE = "SLM_IGNORE_MEMORY_FORECAST"
GIB = 2**30


@dataclass(frozen=True)
class ByTokens:
    """A figure that grows with a training step's tokens, through measured (tokens, value) points in tokens' order:
    straight lines between them, the last line carried past the last point; one point is a figure that does not
    grow (its growth not measured)."""

    points: tuple[tuple[float, float], ...]

    def at(self, tokens: float) -> float:
        if len(self.points) == 1:
            return self.points[0][1]
        pairs = list(zip(self.points, self.points[1:], strict=False))
        (x0, y0), (x1, y1) = next(((low, high) for low, high in pairs if tokens <= high[0]), pairs[-1])
        return y0 + (y1 - y0) * (tokens - x0) / (x1 - x0)

    def scaled(self, factor: float) -> "ByTokens":
        return ByTokens(tuple((tokens, value * factor) for tokens, value in self.points))


@dataclass(frozen=True)
class Measured:
    model_type: str  # config.json's: a shape of the same family is scaled from this row first
    parameters: int
    batch_size: int
    # seconds of a training step by its tokens (each batch padded to its longest row: schedule.step_tokens's mean)
    step_seconds: ByTokens
    # each stage's peak GiB (training, merge, export) by the tokens of the largest step (schedule.step_tokens's
    # largest): the training's activations grow with it, and olive run's one process keeps part of what the
    # training took through the merge and the export
    stage_gib: dict
    # a step of the sample's rows (mean, largest): the forecast before a data file is read
    sample_tokens: tuple[int, int]


# Measured on a 2-core x86_64 CPU (AVX-512, AMX), 24 GiB, no GPU; docs/training.md, "Time per step", and
# docs/measurements.md, "olive run at full size" (scripts/measure_full_size.py: the whole olive run of a project
# rendered with the default answers; peaks of its process tree, the export's with the int4 recipes of the export
# search built one weight at a time, the lm_head first, and scored). The long rows: 29 rows of debates-party
# statements joined to 600-870 tokens (`--data`, export search off), with the loss from the labelled positions'
# logits only (slm/train/labelled_logits.py; the sample's rows were measured before it, where it saves little).
MEASURED = {
    # a random-weight 32-layer Phi-3-mini, bfloat16 and gradient checkpointing, 2 steps each: the sample's rows
    # (122 tokens a step, the largest 124: 6.2 s; four recipes searched) and the long rows (3,324 tokens a step,
    # the largest about 3,460: 352 s, with glibc's mmap threshold at 4 MiB, slm/olive_compat.py: 13.7, 9.8 and
    # 12.5 GiB before it)
    "Phi-3-mini-4k-instruct": Measured(
        "phi3",
        3_821_079_552,
        4,
        step_seconds=ByTokens(((0, 0.0), (122, 6.2), (3324, 352.0))),
        stage_gib={
            "training": ByTokens(((124, 9.6), (3460, 10.9))),
            "merge": ByTokens(((124, 8.4), (3460, 8.9))),
            "export": ByTokens(((124, 11.6), (3460, 11.8))),
        },
        sample_tokens=(122, 136),
    ),
    # the same for a random-weight 32-layer Phi-4-mini: the sample's rows (four recipes searched; 12 s a step is the
    # LoRA pass's time less its two evaluations over its two steps, checkpoint saves included) and the long rows
    # (3,252 tokens a step, the largest 3,392: 331.5 s; its 200,064-token vocabulary's logits at every position
    # took the training to 20.4 GiB before the labelled logits); memory with glibc's mmap threshold at 4 MiB
    # (slm/olive_compat.py; before it, the sample's rows 9.8, 8.6 and 13.4 GiB, the long rows 13.8, 10.0, 15.3)
    "Phi-4-mini-instruct": Measured(
        "phi3",
        3_836_021_760,
        4,
        step_seconds=ByTokens(((0, 0.0), (122, 12.0), (3252, 331.5))),
        stage_gib={
            "training": ByTokens(((124, 9.5), (3392, 10.8))),
            "merge": ByTokens(((124, 8.3), (3392, 8.6))),
            "export": ByTokens(((124, 12.9), (3392, 13.1))),
        },
        sample_tokens=(122, 136),
    ),
    # seconds: the least-squares line (scripts/measure_step_time.py) through 9 olive runs on 4 public data sets of
    # 17-65 tokens a row (200-910 tokens a step), each within 21% of it (the sample's 252 tokens: 1.9 s); memory: the
    # default answers' olive run on the sample, 2 steps (its growth with longer rows not measured)
    "SmolLM2-135M-Instruct": Measured(
        "llama",
        134_515_008,
        8,
        step_seconds=ByTokens(((0, 1.20), (910, 3.81))),
        stage_gib={
            "training": ByTokens(((272, 2.1),)),
            "merge": ByTokens(((272, 1.2),)),
            "export": ByTokens(((272, 3.1),)),
        },
        sample_tokens=(252, 272),
    ),
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
    scale: float  # parameters over the row's
    batch_size: int
    # a step's tokens (mean, largest): the training rows' own when the caller has them (prepare.py), else the sample's
    step_tokens: tuple[float, float]
    from_data: bool = False
    exports_adapter: bool = False

    @property
    def estimated(self) -> bool:
        return self.scale != 1

    @property
    def row(self) -> Measured:
        return MEASURED[self.basis]

    def for_rows(self, step_tokens: tuple[float, float]) -> "Forecast":
        """The same forecast for steps of the training rows' own length (schedule.step_tokens)."""
        return replace(self, step_tokens=step_tokens, from_data=True)

    @property
    def seconds_per_step(self) -> float:
        return self.row.step_seconds.scaled(self.scale).at(self.step_tokens[0])

    @property
    def peaks(self) -> dict:
        stages = {stage: line.scaled(self.scale).at(self.step_tokens[1]) for stage, line in self.row.stage_gib.items()}
        if self.exports_adapter:  # no merged model is written
            del stages["merge"]
        return stages

    def describe(self) -> str:
        how = f"estimated from {self.basis} by parameter count" if self.estimated else f"measured on {self.basis}"
        rows = "these rows" if self.from_data else "the sample's rows"
        stages = ", ".join(f"{stage} {gib:.1f} GiB" for stage, gib in self.peaks.items())
        return (
            f"forecast on a 2-core CPU ({how}): {self.seconds_per_step:.0f} s per training step of {self.batch_size} "
            f"rows ({self.step_tokens[0]:.0f} tokens padded, {rows}); peak memory {stages}"
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
    ratio = project.batch_size / row.batch_size
    return Forecast(
        basis=basis,
        scale=parameters / row.parameters,
        batch_size=project.batch_size,
        step_tokens=(row.sample_tokens[0] * ratio, row.sample_tokens[1] * ratio),
        exports_adapter=project.exports_adapter,
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


def what_would_fit(stage: str, expected: Forecast) -> str:
    if stage == "training":
        rows = (
            f"fewer rows per batch (per_device_train_batch_size) or a shorter max_seq_len (the largest step of "
            f"{'these' if expected.from_data else 'the sample'} rows: {expected.step_tokens[1]:.0f} tokens), "
        )
        return f"{rows}QLoRA (finetune_method qlora: a 4-bit base), {ON_A_GPU}, or a machine with more memory"
    return f"{ON_A_GPU} or a machine with more memory"


def check_fits(project, memory_gib: float | None = None, step_tokens=None) -> Forecast | None:
    """The forecast (for steps of `step_tokens`, (mean, largest), when the caller has read the rows), after refusing
    (UserError) a CPU run whose forecast peak is more than this machine's memory. None for a run that trains on a
    GPU (its model may still run on CPU): the figures are of CPU runs."""
    if project.training_device != "cpu":
        return None
    expected = forecast(project)
    if expected is not None and step_tokens is not None:
        expected = expected.for_rows(step_tokens)
    memory_gib = memory_gib or machine_memory_gib()
    if expected is None or memory_gib is None or os.environ.get(MEMORY_OVERRIDE) == "1":
        return expected
    stage, peak = max(expected.peaks.items(), key=lambda item: item[1])
    if peak > memory_gib:
        raise UserError(
            f"{project.base_model_dir.name}'s {stage} stage is forecast to peak at {peak:.1f} GiB on CPU, more than "
            f"this machine's {memory_gib:.1f} GiB: use {what_would_fit(stage, expected)} ({MEMORY_OVERRIDE}=1 runs "
            "it anyway)"
        )
    return expected
