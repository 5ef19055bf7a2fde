"""Training measured from inside `olive run`, when asked: each step's seconds and tokens, and the peak GPU memory.

Olive's LoRA pass builds its Trainer inside the `olive run` process, where a script outside cannot read the GPU's
memory or the batches. With `SLM_TRAINING_METER=FILE.json` in olive run's environment (the template's
scripts/gpu_check.py sets it), every Trainer built from then on is measured and writes FILE.json when training ends:

- `step_seconds`: each optimisation step's wall time, from its start to its end (the GPU synchronised at both ends,
  so that queued kernels count in the step that queued them); evaluations and checkpoint saves fall between steps;
- `step_tokens`: the tokens each step trained on (attention mask ones: padding left out);
- `peak_gpu_bytes`: `torch.cuda.max_memory_allocated()` over training (null without CUDA);
- `trainable_parameters`: the LoRA weights' count; `device`: the device the Trainer trained on.

Unset, as in a user's run, nothing is installed.
"""

import functools
import json
import os
import time
from pathlib import Path

import torch
import transformers

METER_VARIABLE = "SLM_TRAINING_METER"


def _synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class TrainingMeter(transformers.TrainerCallback):
    def __init__(self, path: Path):
        self.path = path
        self.step_seconds, self.step_tokens = [], []
        self.tokens, self.started, self.trainable = 0, None, None

    def count(self, inputs) -> None:
        """The tokens of one batch the Trainer trains on (called from its training_step)."""
        mask = inputs.get("attention_mask")
        self.tokens += int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel())

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        if model is not None:
            self.trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    def on_step_begin(self, args, state, control, **kwargs):
        _synchronize()
        self.tokens, self.started = 0, time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        _synchronize()
        self.step_seconds.append(time.perf_counter() - self.started)
        self.step_tokens.append(self.tokens)

    def on_train_end(self, args, state, control, **kwargs):
        on_gpu = torch.cuda.is_available() and torch.cuda.is_initialized()
        measured = {
            "device": str(args.device),
            "gpu": torch.cuda.get_device_name() if on_gpu else None,
            "step_seconds": self.step_seconds,
            "step_tokens": self.step_tokens,
            "peak_gpu_bytes": torch.cuda.max_memory_allocated() if on_gpu else None,
            "trainable_parameters": self.trainable,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(measured, indent=2) + "\n", encoding="utf-8")


def meter_training_when_asked() -> None:
    """Measure every Trainer built from now on when SLM_TRAINING_METER names a file; otherwise do nothing."""
    target = os.environ.get(METER_VARIABLE)
    trainer = transformers.Trainer
    # marked on the class: early stopping (slm/train/early_stopping.py) wraps __init__ again after this
    if not target or getattr(trainer, "slm_metered", False):
        return
    trainer.slm_metered = True
    build = trainer.__init__

    def build_metered(self, *args, **kwargs):
        build(self, *args, **kwargs)
        meter = TrainingMeter(Path(target))
        self.add_callback(meter)
        step = self.training_step

        @functools.wraps(step)
        def counted_step(model, inputs, *rest, **named):
            meter.count(inputs)
            return step(model, inputs, *rest, **named)

        self.training_step = counted_step

    trainer.__init__ = build_metered
