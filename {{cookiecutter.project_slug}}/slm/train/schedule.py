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

from slm.train.footprint import MEASURED

# validation rows carved out of the training rows by prepare.py: a tenth, at most this many
VALIDATION_RATIO = 0.1
MAX_VALIDATION_ROWS = 200


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


def estimated_seconds(model_dir_name: str, schedule: Schedule) -> float | None:
    """Training time on a 2-core CPU like the one measured (slm/train/footprint.py), scaled by batch size; None if not
    measured."""
    measured = MEASURED.get(model_dir_name)
    if measured is None:
        return None
    return measured.seconds_per_step * schedule.steps * schedule.batch_size / measured.batch_size
