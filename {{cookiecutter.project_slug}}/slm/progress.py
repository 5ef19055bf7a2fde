"""Progress bars that suit where they are shown: live on a terminal, a line every 30 s in a log.

On a terminal, tqdm redraws its bar in place. When stderr is a file or a pipe (CI, Azure ML, `2> log`),
every redraw would be one more line ending in a carriage return: there the bar is updated at most
every 30 seconds, so a log shows a few lines of progress instead of one per item. The Trainer's own bar
inside `olive run` gives way there to its log lines (`quiet_trainer_bar_in_logs`).
"""

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
LOG_INTERVAL_SECONDS = 30


def is_terminal(stream=None) -> bool:
    stream = stream if stream is not None else sys.stderr
    return getattr(stream, "isatty", lambda: False)()


def progress_options(stream=None) -> dict:
    """tqdm's keyword arguments for `stream` (default stderr)."""
    stream = stream if stream is not None else sys.stderr
    if is_terminal(stream):
        return {"file": stream}
    return {"file": stream, "mininterval": LOG_INTERVAL_SECONDS, "maxinterval": LOG_INTERVAL_SECONDS}


def progress(iterable: Iterable[T], desc: str, unit: str = "it", **options) -> Iterator[T]:
    """tqdm over `iterable` on stderr, as progress_options says."""
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, unit=unit, **{**progress_options(), **options})


def quiet_trainer_bar_in_logs(training_args: dict, stream=None) -> bool:
    """With stderr a file or a pipe (`olive run > log 2>&1`, CI, Azure ML), the Trainer prints its log lines
    (loss, learning rate) instead of redrawing its bar thousands of times: what `disable_tqdm` selects.

    Olive builds the TrainingArguments from the config, which cannot know where its output goes, so this is
    decided when `olive run` starts (slm/train/olive_data.py): the Trainer takes
    `transformers.trainer.DEFAULT_PROGRESS_CALLBACK` when `disable_tqdm` is not set, the default transformers
    itself swaps in a notebook. A `disable_tqdm` in `training_args` is the user's choice and is left alone.
    Returns True when the bar gave way.
    """
    if is_terminal(stream) or "disable_tqdm" in training_args:
        return False
    from transformers import trainer, trainer_callback

    trainer.DEFAULT_PROGRESS_CALLBACK = trainer_callback.PrinterCallback
    return True
