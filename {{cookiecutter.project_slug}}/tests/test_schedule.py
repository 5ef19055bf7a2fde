"""The schedule follows the row count by the documented rule (slm/train/schedule.py), with no training run."""

import math

import pytest

from slm.project import EARLY_STOPPING_KEY, Project
from slm.train.schedule import Schedule, row_order, step_tokens, validation_count

ROOT_CONFIG = "fine-tuning/olive-config.json"


@pytest.mark.parametrize("rows", [1, 7, 24, 216, 500, 1_440, 2_000, 20_000, 200_000])
def test_steps_are_epochs_over_the_rows_within_the_floor_and_the_cap(rows):
    schedule = Schedule(rows, batch_size=8, epochs=3, min_steps=100, step_cap=1000)
    assert schedule.steps == min(1000, max(100, math.ceil(3 * rows / 8)))
    assert schedule.examples == schedule.steps * 8
    assert schedule.passes == pytest.approx(schedule.steps * 8 / rows)


def test_the_describe_line_says_why_when_the_floor_or_the_cap_decides():
    assert "(raised to min_steps 100)" in Schedule(24, 8, 3, 100, 1000).describe()
    assert "(cut to step_cap 1000)" in Schedule(20_000, 8, 3, 100, 1000).describe()
    assert "=" in Schedule(1_440, 8, 3, 100, 1000).describe() and "(" not in Schedule(1_440, 8, 3, 100, 1000).describe()


@pytest.mark.parametrize(("rows", "steps", "batch_size"), [(216, 100, 8), (7, 3, 4), (1_440, 540, 8), (30, 1, 8)])
def test_every_row_comes_once_per_pass_and_the_last_pass_is_cut(rows, steps, batch_size):
    order = row_order(rows, steps, batch_size, seed=42)
    assert len(order) == steps * batch_size
    full_passes = len(order) // rows
    for number in range(full_passes):
        assert sorted(order[number * rows : (number + 1) * rows]) == list(range(rows))
    assert len(set(order[full_passes * rows :])) == len(order) - full_passes * rows  # no row twice in the cut pass
    assert order == row_order(rows, steps, batch_size, seed=42)  # deterministic
    if full_passes >= 2:
        assert order[:rows] != order[rows : 2 * rows]  # each pass in its own order


def test_a_step_costs_its_batches_padded_to_their_longest_row_cut_at_max_seq_len():
    """The forecast's tokens of a step are those Olive's collator builds: each batch padded, not each row to the cap."""
    schedule = Schedule(8, batch_size=4, epochs=1, min_steps=2, step_cap=2)
    order = row_order(8, 2, 4, seed=42)
    lengths = [10, 10, 10, 10, 10, 10, 10, 300]  # one long row: its batch pads to it, the other batch does not
    long_batch = 0 if 7 in order[:4] else 1
    padded = [4 * 10, 4 * 10]
    padded[long_batch] = 4 * 300
    assert step_tokens(lengths, schedule, 42, None) == (sum(padded) / 2, 4 * 300)
    padded[long_batch] = 4 * 128
    assert step_tokens(lengths, schedule, 42, 128) == (sum(padded) / 2, 4 * 128)  # cut at max_seq_len
    assert step_tokens([10] * 8, schedule, 42, 128) == (40, 40)


VALIDATION_COUNTS = [(1, 0), (2, 1), (5, 1), (10, 1), (15, 2), (216, 22), (1_600, 160), (10_000, 200)]


@pytest.mark.parametrize(("rows", "expected"), VALIDATION_COUNTS)
def test_validation_split_is_a_tenth_of_the_training_rows_at_most_200(rows, expected):
    assert validation_count(rows) == expected


def test_the_rendered_config_carries_the_schedule_the_readme_documents():
    project = Project.load(ROOT_CONFIG)
    settings = project.schedule_settings
    assert set(settings) == {"epochs", "min_steps", "step_cap"}
    assert "max_steps" not in project.training_args  # set only to override the schedule
    assert project.training_args["train_sampling_strategy"] == "sequential"
    readme = open("README.md", encoding="utf-8").read()
    assert "`min_steps`" in readme and "`step_cap`" in readme and "training_args.max_steps" in readme


def test_the_rendered_config_stops_early_as_the_readme_documents():
    project = Project.load(ROOT_CONFIG)
    patience = project.pre_process[EARLY_STOPPING_KEY]
    assert isinstance(patience, int) and patience >= 0
    # the count of evaluations without improvement comes back on resume, so a resumed run stops at the same step
    assert project.training_args["restore_callback_states_from_checkpoint"] is True
    assert f"`{EARLY_STOPPING_KEY}`" in open("README.md", encoding="utf-8").read()


@pytest.mark.parametrize("patience", [-1, 2.5, "3", True])
def test_early_stopping_refuses_a_patience_that_is_not_a_count(patience):
    from slm.train.early_stopping import stop_early_after

    with pytest.raises(ValueError, match=EARLY_STOPPING_KEY):
        stop_early_after(patience)
