"""What prepare.py finds in a data file before anything is trained: repeats, conflicts, labels, lengths, the split.

- A repeat is a row with the same input (case and spacing aside) and the same answer as an earlier one (kept
  once by default).
- A conflict is one input with different answers: the model is taught both, and a held-out copy is scored
  against one of them.
- Rows with the same input form one group, and a group goes into one split whole: no held-out input is
  trained or validated on, no validation input trained on.
- When the answers are a small label set (the rule infer.py --eval uses to score accuracy rather than
  token F1, slm.metrics.label_set), the groups are split stratified: each label in proportion in each split.

Row numbers are the data rows of the user's file, counted from 1.
"""

import json
import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass

from slm.engines import load_tokenizer
from slm.errors import UserError
from slm.metrics import label_set
from slm.train.schedule import validation_count

SPLITS = ("train", "validation", "eval")
# At the default fifth held out, a label needs 5 rows for one of them to be held out in proportion and a
# few left to learn from; with fewer it is scored on nothing, or trained on almost nothing.
RARE_LABEL_ROWS = 5
# Without the base model's tokenizer, token counts are estimated: English text runs at about 4 characters
# a token in the BPE vocabularies of the models offered here (more tokens in other languages and in code).
CHARACTERS_PER_TOKEN = 4
# how many row numbers a summary line shows before pointing at the report file
SHOWN_ROWS = 10


def _same_text(text):
    """The text as two copies of one input may differ: case, and spaces (a doubled space, a tab, a line break)."""
    return " ".join(text.split()).casefold()


def input_key(row, task):
    """What identifies an input: its text, case and spacing aside (for a conversation, every turn but the
    assistant's)."""
    if task.data_format == "messages":
        return json.dumps([_same_text(m["content"]) for m in row[task.message_col] if m["role"] != "assistant"])
    return _same_text(row[task.input_column])


def answer_key(row, task):
    """What the model is taught to write for the input: the answer (for a conversation, every assistant turn)."""
    if task.data_format == "messages":
        return json.dumps([m["content"].strip() for m in row[task.message_col] if m["role"] == "assistant"])
    return task.reference(row).strip()


@dataclass
class Repeats:
    kept: list[int]  # indices into the rows, in file order
    removed: list[tuple[int, int]]  # (row, the earlier row it repeats), row numbers
    conflicts: list[list[int]]  # the row numbers of each input that has more than one answer


def find_repeats(rows, task, keep_duplicates=False):
    """Exact repeats (removed unless keep_duplicates) and conflicts (listed with every row of the input)."""
    first_of_pair, rows_of_input, answers_of_input = {}, defaultdict(list), defaultdict(set)
    kept, removed = [], []
    for index, row in enumerate(rows):
        key, answer = input_key(row, task), answer_key(row, task)
        rows_of_input[key].append(index + 1)
        answers_of_input[key].add(answer)
        first = first_of_pair.setdefault((key, answer), index + 1)
        if first != index + 1 and not keep_duplicates:
            removed.append((index + 1, first))
        else:
            kept.append(index)
    conflicts = [numbers for key, numbers in rows_of_input.items() if len(answers_of_input[key]) > 1]
    return Repeats(kept, removed, conflicts)


def smallest_file(eval_ratio, batch_size):
    """The fewest distinct inputs prepare.py splits: one held out to score the model on, one for validation to
    choose the best checkpoint by, and a batch of distinct rows to train on. With fewer training rows than a
    batch every step repeats rows inside its batch (slm.train.schedule.row_order lays whole passes end to end), and
    a score on no held-out row means nothing."""
    inputs = 3
    while True:
        train, validation, _ = split_counts(inputs, eval_ratio)
        if train >= batch_size and validation >= 1:
            return inputs
        inputs += 1


def split_counts(inputs, eval_ratio):
    """(train, validation, eval) input counts: a share held out for eval, then validation out of the rest."""
    held_out = min(inputs - 1, max(1, round(inputs * eval_ratio)))
    validation = max(0, validation_count(inputs - held_out))
    return inputs - held_out - validation, validation, held_out


def _take(candidates, strata, count):
    """`count` of the candidate groups, in their order, each stratum in proportion to its share of the
    candidates (largest remainders, ties to the stratum named first)."""
    sizes = Counter(strata[group] for group in candidates)
    total = sum(sizes.values())
    quota = {stratum: size * count // total for stratum, size in sizes.items()}
    by_remainder = sorted(sizes, key=lambda stratum: (-(sizes[stratum] * count % total), str(stratum)))
    for stratum in by_remainder[: count - sum(quota.values())]:
        quota[stratum] += 1
    taken = set()
    for group in candidates:
        if quota[strata[group]] > 0:
            quota[strata[group]] -= 1
            taken.add(group)
    return taken


def split_groups(strata, eval_ratio, seed):
    """(train, validation, eval) lists of group indices; strata[g] is group g's label (None: not stratified).
    Deterministic for a seed; with one stratum it is a plain shuffled split."""
    order = list(range(len(strata)))
    random.Random(seed).shuffle(order)
    _, validation_size, eval_size = split_counts(len(order), eval_ratio)
    held_out = _take(order, strata, eval_size)
    rest = [group for group in order if group not in held_out]
    validation = _take(rest, strata, validation_size)
    return (
        [group for group in rest if group not in validation],
        [group for group in rest if group in validation],
        [group for group in order if group in held_out],
    )


def split_rows(rows, task, strata, eval_ratio, seed, batch_size, source):
    """(train, validation, eval) lists of row indices, every input's rows in one split; strata: each row's label
    to stratify by, or None. Refuses a file with fewer distinct inputs than smallest_file."""
    groups = {}  # input -> its rows, in file order
    for index, row in enumerate(rows):
        groups.setdefault(input_key(row, task), []).append(index)
    groups = list(groups.values())
    smallest = smallest_file(eval_ratio, batch_size)
    if len(groups) < smallest:
        raise UserError(
            f"{source.as_posix()}: {len(groups)} distinct inputs are too few: a batch of {batch_size} to train on, "
            f"one to validate on and one held out to score take {smallest} with --eval-ratio {eval_ratio}: add rows "
            "(or lower --eval-ratio or training_args.per_device_train_batch_size)"
        )
    # a group's stratum is its first row's label (a conflict's other rows follow it)
    by_group = [strata[members[0]] if strata else None for members in groups]
    return [
        [index for group in chosen for index in groups[group]] for chosen in split_groups(by_group, eval_ratio, seed)
    ]


def answer_labels(references):
    """The label set of the answers (slm.metrics' rule), or None; and when the answers would be labels but for
    some seen only once, those answers (a typo, or a label with one row)."""
    labels = label_set(references)
    if labels is not None:
        return labels, []
    if label_set(references + references) is None:  # free text whatever the counts
        return None, []
    counts = Counter(reference.strip() for reference in references)
    return None, sorted(answer for answer, count in counts.items() if count == 1)


def estimated_lengths(rows, task):
    """Token counts estimated from characters, for when the base model's tokenizer is not at hand."""
    if task.data_format == "messages":
        texts = [" ".join(m["content"] for m in row[task.message_col]) for row in rows]
    else:
        texts = [task.template.format(**row) for row in rows]
    return [math.ceil(len(text) / CHARACTERS_PER_TOKEN) for text in texts]


def token_lengths(rows, task, tokenizer):
    """Each row's training text in tokens, with the base model's tokenizer."""
    texts = [task.training_text(row, tokenizer)[0] for row in rows]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def rows_text(numbers, report_name):
    shown = ", ".join(str(number) for number in numbers[:SHOWN_ROWS])
    more = len(numbers) - SHOWN_ROWS
    return f"{shown}, ... ({more} more in {report_name})" if more > 0 else shown


def label_counts(rows, task, splits, labels):
    """{label: {split: rows}} over the split rows, or None for free text."""
    if labels is None:
        return None
    counts = {label: dict.fromkeys(SPLITS, 0) for label in labels}
    for name, indices in zip(SPLITS, splits, strict=True):
        for index in indices:
            counts[task.reference(rows[index]).strip()][name] += 1
    return counts


def refuse_conflicts(source, conflicts, report_name):
    """--strict: one ERROR line naming the conflicting rows."""
    groups = "; ".join(", ".join(map(str, numbers)) for numbers in conflicts[:SHOWN_ROWS])
    more = f"; ... {len(conflicts) - SHOWN_ROWS} more" if len(conflicts) > SHOWN_ROWS else ""
    raise UserError(
        f"{source}: inputs with different answers (rows {groups}{more}): give each input one "
        f"answer or drop the rows it should not have (without --strict they are kept and listed in {report_name})"
    )


def row_lengths(project, rows):
    """(each row's training text in tokens, how they were counted): with the base model's tokenizer when
    model-cache/ has it, else estimated."""
    task, model_dir = project.task, project.base_model_dir
    if (model_dir / "tokenizer_config.json").is_file() or (model_dir / "tokenizer.json").is_file():
        return token_lengths(rows, task, load_tokenizer(model_dir)), "tokens"
    return estimated_lengths(rows, task), (
        f"tokens, estimated at {CHARACTERS_PER_TOKEN} characters a token until "
        "`python setup/get_model.py` brings the base model's tokenizer"
    )
