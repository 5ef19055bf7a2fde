"""Fixes to Olive 0.13.0. The first two are what the export search needs, applied when Olive imports
slm/export/olive_eval.py; the others are for every run, set when Olive imports
slm/train/olive_data.py. Both imports happen while Olive reads the config, before it runs anything.

1. Olive cannot write out a config with a custom metric: `olive run` serialises the whole
   workflow config before it runs, and a custom metric has no `backend` and its sub-types no
   `metric_config` (both None), whose serialisers call `None.model_dump()` and fail. Both are
   taught to keep a None. Patching the functions' code changes every compiled pydantic serialiser
   that calls them (each config that nests a Metric holds a reference to these very functions).
2. A search fails at its second candidate: the passes before the builder come from the cache, and
   recording them again in the footprint sets `model_config`, which FootprintNode only accepts by
   its alias at construction (`"FootprintNode" object has no field "model_config"`).
3. A failed pass ends `olive run` with exit status 0: Olive catches the error, logs its traceback and
   "No output model produced", and returns (a MemoryError in ModelBuilder, a full disk, a config the
   model cannot load). `fail_when_no_model_is_produced` makes such a run end with an `ERROR:` line, the
   command to retry and exit status 1, so that a script or CI job running `olive run` stops there.
4. Olive runs every pass and every evaluation in one process, and glibc keeps what a pass freed (the
   training step's and ModelBuilder's many small tensors) in its arenas: the next pass then starts on
   top of the last one's peak. `release_memory_after_each_step` collects and hands the freed memory back
   to the system (malloc_trim) after each pass and each evaluation.
5. glibc raises its mmap threshold (up to 32 MiB) each time a large block is freed: after the first few, the
   training's activations and the builder's tensors of a few MiB come from the heap, where what is freed waits
   for a later fit and malloc_trim cannot hand back what lies below a live block. On rows of 850 tokens a
   full-size Phi-4-mini's training left 5.6 GiB resident, and its int4 build peaked at 15.3 GiB on top of it.
   `map_large_blocks_apart` fixes the threshold at MMAP_THRESHOLD_BYTES for the whole run: each larger block is
   its own mapping, handed back when it is freed (docs/measurements.md, "glibc's mmap threshold").

They reach into Olive's internals, so they are installed only on the Olive version they were tested
with, the one setup/requirements.txt pins: on any other, `check_olive_version` stops the run with an
`ERROR:` line before anything is patched (the next Olive may have fixed, moved or renamed these).
"""

import atexit
import ctypes
import ctypes.util
import functools
import gc
import logging
import os
import re
import sys
from importlib import metadata
from pathlib import Path

from olive.engine.engine import Engine
from olive.engine.footprint import FootprintNode
from olive.evaluator import metric as olive_metric

from slm.project import OLIVE_RUN

OLIVE_PACKAGE = "olive-ai"
# the pinned stack the template rendered (its one definition: the template's cookiecutter.json `_stack`)
REQUIREMENTS = Path(__file__).resolve().parents[1] / "setup" / "requirements.txt"


def tested_olive_version(requirements: Path = REQUIREMENTS) -> str | None:
    """The olive-ai version the project pins; None when the file or the pin is gone (the user unpinned it)."""
    text = requirements.read_text(encoding="utf-8") if requirements.is_file() else ""
    pin = re.search(rf"^{OLIVE_PACKAGE}==(\S+)\s*$", text, re.MULTILINE)
    return pin.group(1) if pin else None


@functools.cache
def check_olive_version() -> None:
    """Stop with one `ERROR:` line when the installed Olive is not the version these fixes were tested on."""
    tested = tested_olive_version()
    try:
        installed = metadata.version(OLIVE_PACKAGE)
    except metadata.PackageNotFoundError:
        installed = "(no version recorded)"
    if tested and installed != tested:
        sys.exit(
            f"ERROR: {OLIVE_PACKAGE} {installed} is installed, but this project's fixes to Olive "
            f"(slm/olive_compat.py) were tested with {OLIVE_PACKAGE} {tested} only: run "
            f"`pip install {OLIVE_PACKAGE}=={tested}` in .venv (or `python setup/install.py`)"
        )


def _dump_or_keep(self, value):
    return value.model_dump() if hasattr(value, "model_dump") else value


def _update_footprint_node(self, **kwargs):
    for name, value in kwargs.items():
        setattr(self, "model_config_data" if name == "model_config" else name, value)


def apply() -> None:
    check_olive_version()
    olive_metric.Metric.serialize_backend.__code__ = _dump_or_keep.__code__
    olive_metric.SubMetric.serialize_metric_config.__code__ = _dump_or_keep.__code__
    FootprintNode.update = _update_footprint_node


class _NoModelWatch(logging.Handler):
    """Notes the warning Olive's engine logs at the end of a run that produced no model. (With the config's
    log_severity_level above 2, Olive drops warnings before any handler sees them: the run then ends with 0.)"""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.no_model = False

    def emit(self, record):
        if record.getMessage().startswith("No output model produced"):
            self.no_model = True


def fail_when_no_model_is_produced() -> None:
    check_olive_version()
    watch = _NoModelWatch()
    logging.getLogger("olive.engine.engine").addHandler(watch)

    def exit_status():
        if watch.no_model:
            sys.stdout.flush()
            print(
                'ERROR: olive run produced no model: a pass failed (its error is above, after "Pass run failed"'
                ' or "Failed to run Olive"); fix what it says',
                file=sys.stderr,
            )
            print(f"Retry from the project root: {OLIVE_RUN}", file=sys.stderr, flush=True)
            # an exit handler cannot set the exit status otherwise (SystemExit is ignored there)
            os._exit(1)

    atexit.register(exit_status)


# glibc's malloc.h: mallopt's parameter for the size from which a block gets its own mapping
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 4 << 20


@functools.cache
def _glibc_function(name: str):
    """A glibc function, or None off Linux; looked up once (find_library runs ldconfig in a child process)."""
    libc = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    return getattr(ctypes.CDLL(libc), name, None) if libc else None


def release_memory() -> None:
    """Free what is unreachable and give glibc's free memory back to the system (no-op off glibc)."""
    gc.collect()
    trim = _glibc_function("malloc_trim")
    if trim is not None:
        trim(0)


def map_large_blocks_apart() -> None:
    """From now on, every block of MMAP_THRESHOLD_BYTES or more gets its own mapping (no-op off glibc): see 5."""
    mallopt = _glibc_function("mallopt")
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def _then_release(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        finally:
            release_memory()

    return wrapper


def release_memory_after_each_step() -> None:
    if not getattr(Engine._run_pass, "releases_memory", False):
        for name in ("_run_pass", "_evaluate_model"):
            setattr(Engine, name, _then_release(getattr(Engine, name)))
        Engine._run_pass.releases_memory = True
