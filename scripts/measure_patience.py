"""What each early-stopping rule would have done on validation curves already measured.

    python scripts/measure_patience.py PROJECT [PROJECT ...] [--patience 1 2 3 4 5] [--every 1 2]
        [--counted-from start template]

Each PROJECT is a rendered project whose `olive run` ran its whole schedule (`__early_stopping_patience=0`, e.g.
from scripts/measure_datasets.py): its last checkpoint's trainer_state.json holds every evaluation. For each
cadence (`--every K`: every K-th of the run's evaluations, as if `eval_steps` were K times the run's), each start
(`--counted-from start`: every evaluation counts; `template`: from the step slm/train/schedule.py's
`stalls_counted_from` gives the run, the end of the first pass or half the schedule) and each patience it replays
the rule of slm/train/early_stopping.py (stop after that many counted evaluations in a row without a lower
validation loss) and prints where the run would have stopped, the step it would have kept, whether that is the
whole run's best step (and how much higher the kept step's validation loss is), and the training time that rule
would have taken: the run's own seconds a step (its training time less its evaluations) times the steps run, plus
its evaluations' mean time times the evaluations run. Reads the checkpoints and replays the rule with this
template's own code (slm/train/checkpoints.py, schedule.py and early_stopping.py; a project rendered by an older
template reads the same): no model is loaded.
"""

import argparse
import itertools
import json
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TEMPLATE))
sys.path.insert(0, str(TEMPLATE / "{{cookiecutter.project_slug}}"))  # the generated project's package, slm
from template_logic.workflow import CHECKPOINT_DIR  # noqa: E402


def evaluations(project: Path) -> tuple[list[tuple[int, float]], int, float | None, float, int]:
    """(step, validation loss) of every evaluation, the scheduled steps, the training's seconds (None without a start
    in the run record), the evaluations' mean seconds and the step the template counts stalls from, from the last
    checkpoint and its run record."""
    from slm.train.checkpoints import last_checkpoint, run_record, trainer_state
    from slm.train.schedule import Schedule

    latest = last_checkpoint(project / CHECKPOINT_DIR)
    if latest is None:
        raise SystemExit(f"ERROR: {project / CHECKPOINT_DIR} holds no checkpoint: run olive run there first")
    state = trainer_state(latest)
    evaluated = [entry for entry in state["log_history"] if "eval_loss" in entry]
    curve = [(entry["step"], entry["eval_loss"]) for entry in evaluated]
    record = json.loads(run_record(project / CHECKPOINT_DIR).read_text(encoding="utf-8"))
    seconds = (latest / "trainer_state.json").stat().st_mtime - record["started"] if "started" in record else None
    eval_seconds = sum(entry["eval_runtime"] for entry in evaluated) / len(evaluated)
    steps = state["max_steps"]
    # the run's own schedule: its steps as run, whatever rule set them
    schedule = Schedule(record["rows"], record["batch_size"], record["epochs"], 1, steps, fixed_steps=steps)
    return curve, steps, seconds, eval_seconds, schedule.stalls_counted_from


def main():
    from slm.train.early_stopping import replay

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("projects", nargs="+", type=Path)
    parser.add_argument("--patience", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--every", nargs="+", type=int, default=[1], help="replay every K-th evaluation")
    parser.add_argument(
        "--counted-from",
        nargs="+",
        choices=["start", "template"],
        default=["template"],
        help="count stalls from the first evaluation, or from where the template counts them",
    )
    args = parser.parse_args()
    for project in args.projects:
        if not (project / "slm").is_dir():
            raise SystemExit(f"ERROR: {project} is not a rendered project (no slm/): give the project's folder")
    print(
        f"{'project':<34}{'every':>6}{'counted from':>13}{'patience':>9}{'stops at':>12}{'steps saved':>13}"
        f"{'kept':>6}{'best':>6}{'best kept':>10}{'loss over best':>15}{'training s':>11}"
    )
    for project in args.projects:
        full_curve, scheduled, seconds, eval_seconds, template_start = evaluations(project)
        name = project.name.split("-early-stopping")[0]  # measure_datasets.py's slug, less the variant
        best = min(full_curve, key=lambda evaluation: evaluation[1])[0]
        losses = dict(full_curve)
        step_seconds = (seconds - eval_seconds * len(full_curve)) / scheduled if seconds else None
        for every, counted_from, patience in itertools.product(args.every, args.counted_from, args.patience):
            curve = full_curve[every - 1 :: every]
            stop, kept = replay(curve, patience, template_start if counted_from == "template" else 0)
            ran = stop or scheduled
            evaluated = sum(step <= ran for step, _ in curve)
            estimate = f"{ran * step_seconds + evaluated * eval_seconds:>11.0f}" if step_seconds else f"{'-':>11}"
            rule = f"{every:>6}{counted_from:>13}{patience:>9}"
            print(
                f"{name:<34}{rule}{ran:>6} of {scheduled:<4}{1 - ran / scheduled:>12.0%}{kept:>6}{best:>6}"
                f"{'yes' if kept == best else 'NO':>10}{losses[kept] / losses[best] - 1:>15.1%}{estimate}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
