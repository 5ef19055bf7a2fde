"""Validation answer accuracy: the share of rows whose every answer token is the model's choice for the next token.

Under teacher forcing a row counts as answered when, at each labelled position (the answer and its end token), the
argmax of the logits is the label: exactly the condition for greedy decoding to write the answer and stop. On a
label task `infer.py --eval` decodes constrained to the label set (slm/generation.py's label_regex), so there the
argmax is taken among the tokens that continue some label (`answer_choices`, from the answers' own token sequences):
the accuracy `infer.py --eval` measures before int4, up to spellings of a label in other tokens, which the
constraint also allows. scripts/measure_kept_step.py computes both for every checkpoint of a run, from the logits of
the labelled positions (slm/train/labelled_logits.py), the ones the validation loss is computed from. Keeping the
step with the best validation answer accuracy instead of the lowest loss was tried inside `olive run` and not taken:
docs/training.md, "Keeping the step with the best validation answer accuracy".
"""

import torch
from olive.data.constants import IGNORE_INDEX  # the label the loss skips, as the pre-processing sets it


def predicted_labels(labels: torch.Tensor) -> torch.Tensor:
    """The label each position predicts (position t predicts token t+1): IGNORE_INDEX where there is none."""
    return torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)


def answer_choices(answers: list[list[int]]) -> dict[tuple, list[int]]:
    """{the answer tokens so far: the tokens that continue some answer} over the answers' token sequences (each
    answer's labelled tokens, its end token included)."""
    choices = {}
    for answer in map(tuple, answers):
        for length in range(len(answer)):
            choices.setdefault(answer[:length], set()).add(answer[length])
    return {prefix: sorted(tokens) for prefix, tokens in choices.items()}


def answered_rows(kept_logits: torch.Tensor, labels: torch.Tensor, choices: dict | None = None) -> torch.Tensor:
    """A boolean per row of `labels` (batch, tokens): every labelled token is the argmax of its logits, among the
    tokens `choices` allows after the answer so far (answer_choices; all of them where it has no entry, or without
    `choices`). `kept_logits` holds the logits of the positions that predict a label only, in row-major order
    ((positions, vocabulary), or (1, positions, vocabulary)), as the model returns them for a boolean
    `logits_to_keep`."""
    predicted = predicted_labels(labels)
    keep = predicted != IGNORE_INDEX
    kept_logits = kept_logits.reshape(-1, kept_logits.shape[-1])
    if choices:
        kept_logits = among_choices(kept_logits, predicted, keep, choices)
    correct = kept_logits.argmax(-1) == predicted[keep]
    row_of_position = keep.nonzero()[:, 0]
    wrong = torch.zeros(labels.shape[0], dtype=torch.long, device=labels.device)
    wrong.index_add_(0, row_of_position, (~correct).long())
    return (wrong == 0) & keep.any(dim=1)


def among_choices(kept_logits, predicted, keep, choices) -> torch.Tensor:
    """The kept logits with every token `choices` does not allow after its row's answer so far set to -inf."""
    allowed = torch.ones_like(kept_logits, dtype=torch.bool)
    position = 0
    for row in range(predicted.shape[0]):
        answer = predicted[row][keep[row]].tolist()
        for length in range(len(answer)):
            tokens = choices.get(tuple(answer[:length]))
            if tokens is not None:
                allowed[position] = False
                allowed[position, tokens] = True
            position += 1
    return kept_logits.masked_fill(~allowed, float("-inf"))
