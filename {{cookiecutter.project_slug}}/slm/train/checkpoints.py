"""The Trainer's checkpoint folder: resumed from only by the run that wrote it.

`olive run` resumes from the last checkpoint in `training_args.output_dir` when that folder has one
(Olive 0.13's LoRA pass). A run of other data or other settings must not resume there: before the
Trainer starts, the pre-processing (slm/train/olive_data.py) compares what this run depends on with what
the folder's run recorded, and moves another run's checkpoints aside.
"""

import hashlib
import json
import logging
import re
import shutil
import sys
import time
from pathlib import Path

from slm.data import load_rows
from slm.errors import UserError
from slm.project import Project
from slm.train import data_report
from slm.train.footprint import check_fits
from slm.train.schedule import project_schedule, project_step_tokens

logger = logging.getLogger("olive.slm")


# training_args that change what is logged, not what is trained
DISPLAY_ONLY = ("overwrite_output_dir", "report_to", "log_level", "logging_steps", "disable_tqdm")


# the Trainer's checkpoint folder names (transformers.trainer_utils.PREFIX_CHECKPOINT_DIR and _re_checkpoint)
CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoints_by_step(checkpoints: Path) -> dict[int, Path]:
    """The Trainer's checkpoint folders in `checkpoints`, by step: the folders transformers'
    `get_last_checkpoint` chooses among (a `checkpoint-x` folder or a file named `checkpoint-200` is not one)."""
    return {
        int(match.group(1)): path
        for path in (checkpoints.iterdir() if checkpoints.is_dir() else ())
        if (match := CHECKPOINT_NAME.match(path.name)) and path.is_dir()
    }


def last_checkpoint(checkpoints: Path) -> Path | None:
    """The checkpoint of the highest step in `checkpoints`, as transformers' `get_last_checkpoint` finds the
    one a run resumes from; here without importing transformers (10 s of imports for a folder listing)."""
    steps = checkpoints_by_step(checkpoints)
    return steps[max(steps)] if steps else None


def trainer_state(checkpoint: Path) -> dict:
    """The Trainer's state saved with a checkpoint: its log history, the best checkpoint, callbacks' state."""
    return json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))


def run_record(checkpoints: Path) -> Path:
    """The file beside the checkpoint folder that says which run wrote it (read by fine-tuning/report.py)."""
    return checkpoints.with_name(checkpoints.name + ".run.json")


def run_fingerprint(project):
    """What a training run's checkpoints depend on: the LoRA pass settings, the data configs, the base
    model, and the bytes of the training and validation files."""
    finetune = {key: value for key, value in project.finetune.items() if key != "training_args"}
    args = {key: value for key, value in project.training_args.items() if key not in DISPLAY_ONLY}
    identity = {
        "finetune": finetune,
        "training_args": args,
        "data_configs": project.config.get("data_configs"),
        "base_model": project.base_model_path,
        "data": project.data_digest(),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def guard_checkpoints(project, schedule):
    """Let Olive resume only from checkpoints of this very run; move any other run's aside.

    Writes `<checkpoint dir>.run.json`: the fingerprint, the schedule and the start time, which
    `fine-tuning/report.py` reads. Returns True when the checkpoints will be resumed from.
    """
    checkpoints = project.checkpoint_dir
    if checkpoints is None:
        return False
    # a checkpoint cut off while being saved (stopped mid-save) has no trainer_state.json, the Trainer's
    # last file of a save, and the Trainer would fail on it: the one before it is where to resume
    saved = checkpoints_by_step(checkpoints).values()
    for partial in [path for path in saved if not (path / "trainer_state.json").is_file()]:
        shutil.rmtree(partial)
        logger.warning("%s was cut off while being saved: removed", partial.as_posix())
    record = run_record(checkpoints)
    fingerprint = run_fingerprint(project)
    previous = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}
    resume = last_checkpoint(checkpoints) is not None and previous.get("fingerprint") == fingerprint
    if project.training_args.get("overwrite_output_dir"):
        resume = False
    if checkpoints.is_dir() and any(checkpoints.iterdir()) and not resume:
        move_aside(checkpoints, "held a training run of other settings or data")
    if resume:
        logger.info("resuming the interrupted training run in %s", checkpoints.as_posix())
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(
        json.dumps(
            {
                "fingerprint": fingerprint,
                "rows": schedule.rows,
                "batch_size": schedule.batch_size,
                "steps": schedule.steps,
                "epochs": round(schedule.passes, 3),
                "started": time.time(),
                "resumed": resume,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    return resume


def move_aside(checkpoints: Path, why: str) -> None:
    """Keep another run's checkpoints as `<folder>.previous` (the one kept before is replaced) and log it."""
    aside = checkpoints.with_name(checkpoints.name + ".previous")
    shutil.rmtree(aside, ignore_errors=True)
    checkpoints.rename(aside)
    logger.warning("%s %s: moved to %s; training starts at step 0", checkpoints.as_posix(), why, aside.as_posix())


def training_step_tokens(project):
    """The training file's steps, (mean, largest) tokens, for the forecast of a CPU run (prepare.py's counting: a
    file changed or a max_seq_len raised since is seen here); None on a GPU or before there is a training file."""
    if project.training_device != "cpu" or not project.train_file.is_file():
        return None
    rows = load_rows(project.train_file, project.task)
    return project_step_tokens(project, project_schedule(project, len(rows)), data_report.row_lengths(project, rows)[0])


def check_project_at_start():
    """Run when Olive reads the config, before any pass: what must hold before Olive looks at its cache.

    - The data files still match the recorded data_version, else stop with what to do.
    - The run's forecast peak memory on CPU, for steps of the training file's rows, fits this machine
      (slm/train/footprint.py), else stop with what would.
    - The checkpoint folder exists: Olive 0.13 keys its cache on `training_args.output_dir` written as
      an absolute path when that folder exists and as given when it does not, so without it the run after
      the first would miss the cache and redo every pass.
    - A folder with files but no checkpoint yet (TensorBoard logs of a run stopped early) is moved aside:
      Olive's LoRA pass refuses a non-empty output_dir without a checkpoint before any project code runs.
    """
    try:
        project = Project.load()
    except UserError:  # not run from a project folder (Olive reading another config)
        return
    problem = project.data_version_problem()
    if problem:
        sys.exit(f"ERROR: {problem}")
    try:
        expected = check_fits(project, step_tokens=training_step_tokens(project))
    except UserError as error:
        sys.exit(f"ERROR: {error}")
    if expected:
        logger.info("%s", expected.describe())
    checkpoints = project.checkpoint_dir
    if checkpoints is None:
        return
    if checkpoints.is_dir() and any(checkpoints.iterdir()) and last_checkpoint(checkpoints) is None:
        move_aside(checkpoints, "holds no checkpoint")
    checkpoints.mkdir(parents=True, exist_ok=True)
