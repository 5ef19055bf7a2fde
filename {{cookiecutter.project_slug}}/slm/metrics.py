"""Scoring answers (exact labels for a small label set, token F1 for free text) and summary statistics."""

import re
import string
from collections import Counter

from slm.prompts import normalise_label

# answers count as labels when there are at most this many distinct ones, each short
MAX_LABELS = 20
MAX_LABEL_WORDS = 3


def short_answer(answer):
    """Whether an answer is short enough to be a label."""
    return len(answer.split()) <= MAX_LABEL_WORDS and "\n" not in answer


def label_set(references):
    """The sorted distinct answers when they form a small label set (each seen twice or more), else None."""
    counts = Counter(reference.strip() for reference in references)
    small = 0 < len(counts) <= MAX_LABELS and all(map(short_answer, counts)) and min(counts.values()) >= 2
    return sorted(counts) if small else None


def _normalised_tokens(text):
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return text.split()


def token_f1(prediction, reference):
    """SQuAD-style token F1 between two answers (lower case, punctuation and articles removed)."""
    predicted, expected = _normalised_tokens(prediction), _normalised_tokens(reference)
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def score(answers: list[str], references: list[str]) -> tuple[str, float, list[float]]:
    """Accuracy on a small label set, token F1 for free text: (name, value, each row's score). The one
    scoring rule of infer.py --eval, the benchmark and the export search."""
    if label_set(references):
        rows = [float(normalise_label(a) == normalise_label(r)) for a, r in zip(answers, references, strict=True)]
        return "accuracy", sum(rows) / len(rows), rows
    rows = [token_f1(a, r) for a, r in zip(answers, references, strict=True)]
    return "token_f1", sum(rows) / len(rows), rows


def percentile(values: list[float], fraction: float) -> float:
    """The value at `fraction` (0 to 1) of the sorted values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]
