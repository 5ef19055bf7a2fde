"""The Trainer's checkpoint folder: resumed from only by the run that wrote it.

`olive run` resumes from the last checkpoint in `training_args.output_dir` when that folder has one
(Olive 0.13's LoRA pass). A run of other data or other settings must not resume there: before the
Trainer starts, the pre-processing (slm/olive_data.py) compares what this run depends on with what
the folder's run recorded, and moves another run's checkpoints aside.
"""

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

from slm.errors import UserError
from slm.project import Project

logger = logging.getLogger("olive.slm")


def _file_digest(path):
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def run_fingerprint(project):
    """What a training run's checkpoints depend on: the LoRA pass settings, the data configs, the base
    model, and the bytes of the training and validation files."""
    finetune = {key: value for key, value in project.finetune.items() if key != "training_args"}
    args = {key: value for key, value in project.training_args.items() if key != "overwrite_output_dir"}
    identity = {
        "finetune": finetune,
        "training_args": args,
        "data_configs": project.config.get("data_configs"),
        "base_model": project.base_model_path,
        "train": _file_digest(project.train_file),
        "validation": _file_digest(project.validation_file),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def guard_checkpoints(project, schedule):
    """Let Olive resume only from checkpoints of this very run; move any other run's aside (never delete).

    Writes `<checkpoint dir>.run.json`: the fingerprint, the schedule and the start time, which
    `fine-tuning/report.py` reads. Returns True when the checkpoints will be resumed from.
    """
    checkpoints = project.checkpoint_dir
    if checkpoints is None:
        return False
    record = checkpoints.with_name(checkpoints.name + ".run.json")
    fingerprint = run_fingerprint(project)
    previous = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}
    has_checkpoints = checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*"))
    resume = has_checkpoints and previous.get("fingerprint") == fingerprint
    if project.training_args.get("overwrite_output_dir"):
        resume = False
    if checkpoints.is_dir() and any(checkpoints.iterdir()) and not resume:
        aside = checkpoints.with_name(checkpoints.name + ".previous")
        shutil.rmtree(aside, ignore_errors=True)
        checkpoints.rename(aside)
        logger.warning(
            "%s held a training run of other settings or data: moved to %s; training starts at step 0",
            checkpoints.as_posix(),
            aside.as_posix(),
        )
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


def make_checkpoint_dir():
    """Create the Trainer's checkpoint folder of the project in the working folder, if it has one.

    Olive 0.13 keys its cache on `training_args.output_dir` written as an absolute path when that folder
    exists and as given when it does not; without this, the run after the first one would miss the cache
    and redo every pass (resuming the finished training, then exporting again)."""
    try:
        checkpoints = Project.load().checkpoint_dir
    except UserError:  # not run from a project folder (Olive reading another config)
        return
    if checkpoints is not None:
        checkpoints.mkdir(parents=True, exist_ok=True)
