"""How training went: the loss curve and one summary line, from what the Trainer left in the checkpoints.

    python fine-tuning/report.py

Reads `trainer_state.json` of the latest checkpoint in `training_args.output_dir` (every logged
training loss and every validation loss, and the checkpoint the Trainer kept as best) and the
run record the pre-processing wrote beside it (rows, steps, epochs, start time); writes
`gen-model/report/training-loss.png` and `gen-model/report/training-summary.txt`, and prints the line.
After an export search, also the table of the int4 recipes `olive run` tried, with their validation
scores against the fine-tune in fp32 (`gen-model/report/export-candidates.txt`).
Olive 0.13 runs no project code after training inside `olive run`, hence this separate step.
"""

import argparse
import json
import re
from pathlib import Path

from slm.errors import UserError, cli
from slm.export import search_report
from slm.project import Project
from slm.train.checkpoints import last_checkpoint, run_record, trainer_state

EXPORT_TABLE = "export-candidates.txt"


def read_training(project: Project) -> dict:
    checkpoints = project.checkpoint_dir
    retry = project.olive_run
    if checkpoints is None:
        raise UserError("training_args.output_dir is not set, so the Trainer kept no checkpoints to report on")
    latest = last_checkpoint(checkpoints)
    if latest is None:
        raise UserError(f"no checkpoint in {checkpoints.as_posix()}: train first", retry=retry)
    state = trainer_state(latest)
    record_file = run_record(checkpoints)
    record = json.loads(record_file.read_text(encoding="utf-8")) if record_file.is_file() else {}
    history = state.get("log_history", [])
    best = state.get("best_model_checkpoint")
    best_step = int(re.search(r"-(\d+)$", best).group(1)) if best else None
    return {
        "train": [(entry["step"], entry["loss"]) for entry in history if "loss" in entry],
        "validation": [(entry["step"], entry["eval_loss"]) for entry in history if "eval_loss" in entry],
        "best_step": best_step,
        "best_loss": state.get("best_metric"),
        "steps": state.get("global_step"),
        "max_steps": state.get("max_steps"),
        "rows": record.get("rows"),
        "epochs": record.get("epochs"),
        "seconds": (latest / "trainer_state.json").stat().st_mtime - record["started"] if "started" in record else None,
        "resumed": record.get("resumed", False),
        "stalled_evaluations": stalled_evaluations(state),
    }


def stalled_evaluations(state: dict) -> int | None:
    """The early-stopping patience when the run stopped for it (that many evaluations without a lower validation
    loss, as the callback counted them in trainer_state.json), else None: no early stopping, or not triggered."""
    for saved in state.get("stateful_callbacks", {}).values():
        for callback in saved if isinstance(saved, list) else [saved]:
            patience = callback.get("args", {}).get("early_stopping_patience")
            count = callback.get("attributes", {}).get("early_stopping_patience_counter", 0)
            if patience and count >= patience:
                return patience
    return None


def summary_line(training: dict) -> str:
    best = (
        f"best step {training['best_step']} (validation loss {training['best_loss']:.4f})"
        if training["best_step"] is not None
        else "no validation (the last step is the model)"
    )
    seconds = f", training {training['seconds']:.0f} s" if training["seconds"] is not None else ""
    resumed = " since the resume" if training["resumed"] else ""
    steps, scheduled, epochs = training["steps"], training["max_steps"], training["epochs"]
    if training["stalled_evaluations"] and steps < scheduled:
        run_epochs = f"{epochs * steps / scheduled:.3f} of {epochs}" if epochs is not None else epochs
        return (
            f"rows {training['rows']}, stopped early at step {steps} of {scheduled}: no better validation loss in "
            f"{training['stalled_evaluations']} evaluations; {best}, epochs {run_epochs}{seconds}{resumed}"
        )
    done = "" if steps == scheduled else f" of {scheduled} (not finished)"
    return f"rows {training['rows']}, steps {steps}{done}, epochs {epochs}, {best}{seconds}{resumed}"


def plot(training: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    if training["train"]:
        axes.plot(*zip(*training["train"], strict=True), label="training loss")
    if training["validation"]:
        axes.plot(*zip(*training["validation"], strict=True), "o-", label="validation loss (answer tokens)")
    if training["best_step"] is not None:
        axes.axvline(training["best_step"], color="grey", linestyle="--", label=f"kept: step {training['best_step']}")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_yscale("log")
    axes.legend()
    axes.set_title(summary_line(training), fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(project: Project) -> str:
    training = read_training(project)
    line = summary_line(training)
    plot(training, project.report_dir / "training-loss.png")
    (project.report_dir / "training-summary.txt").write_text(line + "\n", encoding="utf-8")
    return line


def write_export_report(project: Project) -> str | None:
    """The export search's table (every recipe tried, the kept one marked) and its line, or None."""
    rows = search_report.candidates(project.output_dir)
    if not rows:
        return None
    text = (
        f"{search_report.table(rows)}\n{search_report.kept_line(rows) or 'kept: none of these (model folder changed)'}"
    )
    (project.report_dir / EXPORT_TABLE).write_text(text + "\n", encoding="utf-8")
    return text


@cli
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    project = Project.load()
    line = write_report(project)
    export = write_export_report(project)
    if export:
        print(export)
        print(f"wrote {(project.report_dir / EXPORT_TABLE).as_posix()}")
    print(f"wrote {(project.report_dir / 'training-loss.png').as_posix()}")
    print(line)
    return 0
