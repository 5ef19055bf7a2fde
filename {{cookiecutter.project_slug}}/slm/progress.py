"""Progress bars that suit where they are shown: live on a terminal, a line every 30 s in a log.

On a terminal, tqdm redraws its bar in place. When stderr is a file or a pipe (CI, Azure ML, `2> log`),
every redraw would be one more line ending in a carriage return: there the bar is updated at most
every 30 seconds, so a log shows a few lines of progress instead of one per item.
"""

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
LOG_INTERVAL_SECONDS = 30


def progress_options(stream=None) -> dict:
    """tqdm's keyword arguments for `stream` (default stderr)."""
    stream = stream if stream is not None else sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        return {"file": stream}
    return {"file": stream, "mininterval": LOG_INTERVAL_SECONDS, "maxinterval": LOG_INTERVAL_SECONDS}


def progress(iterable: Iterable[T], desc: str, unit: str = "it", **options) -> Iterator[T]:
    """tqdm over `iterable` on stderr, as progress_options says."""
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, unit=unit, **{**progress_options(), **options})
