"""How much training a data set gets, decided from its row count when `olive run` reads it.

The rule (one place, used by the pre-processing inside `olive run` and by `prepare.py`'s estimate):

    steps = clamp(ceil(epochs * rows / batch_size), min_steps, step_cap)

`epochs`, `min_steps` and `step_cap` are keys of the training data's `pre_process_data_config` in
fine-tuning/olive-config.json (their values come from the model's row of the template's model table).
The floor gives a few hundred rows enough updates; the cap bounds the time on a large file. The
training rows are then laid out as that many batches: every row once per pass over the data, each
pass in its own seeded order, the last pass cut where the steps end; the Trainer reads them in
that order (`train_sampling_strategy: sequential`), so the order is part of the data, not of the
Trainer's sampler. A `max_steps` in `training_args` replaces the rule with that count.
"""

import math
import random
from dataclasses import dataclass

# validation rows carved out of the training rows by prepare.py: a tenth, at most this many
VALIDATION_RATIO = 0.1
MAX_VALIDATION_ROWS = 200
# the order of the rows in each pass, when the pre-processing config does not set `seed`
ORDER_SEED = 42


@dataclass(frozen=True)
class Schedule:
    rows: int
    batch_size: int
    epochs: float
    min_steps: int
    step_cap: int
    # training_args.max_steps, when set: a fixed count instead of the rule
    fixed_steps: int | None = None

    @property
    def steps(self) -> int:
        if self.fixed_steps:
            return self.fixed_steps
        wanted = math.ceil(self.epochs * self.rows / self.batch_size)
        return max(self.min_steps, min(self.step_cap, wanted))

    @property
    def examples(self) -> int:
        return self.steps * self.batch_size

    @property
    def stalls_counted_from(self) -> int:
        """The step from which early stopping counts evaluations without improvement: the end of the first pass over
        the rows, or half the schedule when a short or capped schedule would reach that first (early stopping
        then still acts in its second half)."""
        return min(math.ceil(self.rows / self.batch_size), self.steps // 2)

    @property
    def passes(self) -> float:
        """How many times each row is seen (the epochs actually run)."""
        return self.examples / self.rows

    def describe(self) -> str:
        why = ""
        wanted = math.ceil(self.epochs * self.rows / self.batch_size)
        if self.fixed_steps:
            return (
                f"{self.rows} training rows, {self.steps} steps of {self.batch_size} fixed by training_args.max_steps, "
                f"each row seen {self.passes:.1f} times"
            )
        if wanted < self.min_steps:
            why = f" (raised to min_steps {self.min_steps})"
        elif wanted > self.step_cap:
            why = f" (cut to step_cap {self.step_cap})"
        return (
            f"{self.rows} training rows x {self.epochs:g} epochs / batch {self.batch_size} = {self.steps} steps"
            f"{why}, each row seen {self.passes:.1f} times"
        )


def row_order(rows: int, steps: int, batch_size: int, seed: int) -> list[int]:
    """Row indices for `steps` batches: whole shuffled passes over the rows, the last one cut short."""
    needed = steps * batch_size
    order = []
    epoch = 0
    while len(order) < needed:
        indices = list(range(rows))
        random.Random(f"{seed}-{epoch}").shuffle(indices)
        order += indices
        epoch += 1
    return order[:needed]


def validation_count(rows: int) -> int:
    """How many of `rows` training rows prepare.py keeps apart for validation: at least one (training is
    scored on them to keep the best checkpoint), and at least one row left to train on."""
    return min(MAX_VALIDATION_ROWS, max(1, round(rows * VALIDATION_RATIO)), rows - 1)


def step_tokens(lengths: list[int], schedule: Schedule, seed: int, max_seq_len: int | None) -> tuple[float, int]:
    """(the mean, the largest) tokens a training step computes on: the schedule's batches of these rows (their token
    lengths), each padded to its longest row (Olive's LoRA collator pads a batch, not every row to max_seq_len), cut
    at max_seq_len. The mean sets the time, the largest the training's peak memory."""
    order = row_order(len(lengths), schedule.steps, schedule.batch_size, seed)
    cap = max_seq_len or max(lengths)
    batches = (order[start : start + schedule.batch_size] for start in range(0, len(order), schedule.batch_size))
    padded = [len(batch) * min(cap, max(lengths[index] for index in batch)) for batch in batches]
    return sum(padded) / schedule.steps, max(padded)


def project_schedule(project, train_rows: int) -> Schedule | None:
    """The schedule olive run applies to this many training rows; None without one (no epochs key)."""
    settings = project.schedule_settings
    if settings is None:
        return None
    return Schedule(train_rows, project.batch_size, **settings, fixed_steps=project.training_args.get("max_steps"))


def project_step_tokens(project, schedule: Schedule | None, lengths: list[int]) -> tuple[float, int] | None:
    """step_tokens for these training rows (their lengths in tokens) in this project's row order and max_seq_len;
    None without a schedule or rows."""
    if schedule is None or not lengths:
        return None
    return step_tokens(lengths, schedule, project.pre_process.get("seed", ORDER_SEED), project.max_seq_len)
