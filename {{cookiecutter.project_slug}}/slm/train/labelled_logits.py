"""Logits only where there is a label: the training loss without the vocabulary-wide logits of every prompt token.

A causal LM computes `lm_head` over the whole vocabulary at every position of every row, and its loss upcasts those
logits to float32 and keeps their softmax for the backward pass. With answer-only loss (slm/train/olive_data.py)
almost every position has the label -100: a row of 4 answer tokens after an 800-token prompt still paid for
800 x vocabulary logits. At Phi-4-mini's 200,064-token vocabulary that is 3.2 GB of float32 a row of 4,000 tokens
in the forward pass alone, and at SmolLM2's size the lm_head is about a fifth of a step's arithmetic.

transformers' causal-LM heads take `logits_to_keep` (a boolean mask of the positions to project: `slice_logits_to_keep`
in transformers.modeling_utils) and their loss takes `shift_labels` (the label each kept position predicts). Passing
both computes the same cross-entropy over the same tokens: the loss, its gradient and the validation loss that picks
the best checkpoint are those of the whole-vocabulary computation up to float rounding.

Olive 0.13's LoRA pass builds its `transformers.Trainer` itself, so, as with early stopping, this replaces the
Trainer class's `compute_loss` (slm/train/trainer_methods.py; `logits_only_where_labelled`). A model
whose code does not slice with `slice_logits_to_keep` (remote code, older architectures) is trained as before.
"""

import functools
import sys

import torch
from olive.data.constants import IGNORE_INDEX  # the label the loss skips, as the pre-processing sets it

from slm.train.answer_accuracy import predicted_labels
from slm.train.trainer_methods import replace_trainer_method


def slices_logits(model) -> bool:
    """Whether this model's forward projects only the positions a boolean `logits_to_keep` mask selects: its code
    slices with transformers' `slice_logits_to_keep`, and that takes a mask (the pinned transformers 5.24 does; one
    that takes positions only would misread it)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # under PEFT's wrapper
    slicer = getattr(sys.modules.get(type(base).__module__), "slice_logits_to_keep", None)
    return slicer is not None and _takes_a_mask(slicer)


@functools.cache  # asked at every training step and evaluation batch, of one function
def _takes_a_mask(slicer) -> bool:
    try:
        return slicer(torch.zeros(1, 2, 1), torch.tensor([[False, True]])).shape == (1, 1)
    except (IndexError, RuntimeError, TypeError):
        return False


def labelled_positions_only(inputs: dict) -> dict:
    """The model inputs with `logits_to_keep`, the positions whose next token has a label, and `shift_labels`,
    those labels in the same (row-major) order as the kept logits."""
    predicted = predicted_labels(inputs["labels"])
    keep = predicted != IGNORE_INDEX
    return {**inputs, "logits_to_keep": keep, "shift_labels": predicted[keep]}


def logits_only_where_labelled() -> None:
    """Make every Trainer compute its loss (training and evaluation) on the labelled positions only."""

    def on_labelled_positions(compute_loss):
        def compute_loss_on_labelled_positions(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            # a label smoother or a compute_loss_func takes the labels and the full logits from the outputs itself
            plain = self.label_smoother is None and self.compute_loss_func is None
            if plain and inputs.get("labels") is not None and slices_logits(model):
                inputs = labelled_positions_only(inputs)
            return compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

        return compute_loss_on_labelled_positions

    replace_trainer_method("compute_loss", on_labelled_positions)
