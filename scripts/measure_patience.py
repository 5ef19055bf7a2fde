"""What each early-stopping patience would have done on validation curves already measured.

    python scripts/measure_patience.py PROJECT [PROJECT ...] [--patience 1 2 3 4 5]

Each PROJECT is a rendered project whose `olive run` ran its whole schedule (`__early_stopping_patience=0`, e.g.
from scripts/measure_datasets.py): its last checkpoint's trainer_state.json holds every evaluation. For each
patience it replays transformers' EarlyStoppingCallback rule (stop after that many evaluations in a row without a
lower validation loss) and prints where the run would have stopped, the step it would have kept, and whether that
is the whole run's best step. Reads the checkpoints with the first project's own reader
(slm/train/checkpoints.py): no model, no stack.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from template_logic.workflow import CHECKPOINT_DIR  # noqa: E402


def evaluations(project: Path) -> tuple[list[tuple[int, float]], int]:
    """(step, validation loss) of every evaluation, and the scheduled steps, from the last checkpoint."""
    from slm.train.checkpoints import last_checkpoint, trainer_state

    latest = last_checkpoint(project / CHECKPOINT_DIR)
    if latest is None:
        raise SystemExit(f"ERROR: {project / CHECKPOINT_DIR} holds no checkpoint: run olive run there first")
    state = trainer_state(latest)
    curve = [(entry["step"], entry["eval_loss"]) for entry in state["log_history"] if "eval_loss" in entry]
    return curve, state["max_steps"]


def replay(curve: list[tuple[int, float]], patience: int) -> tuple[int | None, int]:
    """(the step training stops at, None for the end; the step kept) under EarlyStoppingCallback's rule."""
    best_loss, kept, without = float("inf"), None, 0
    for step, loss in curve:
        if loss < best_loss:
            best_loss, kept, without = loss, step, 0
        else:
            without += 1
            if without >= patience:
                return step, kept
    return None, kept


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("projects", nargs="+", type=Path)
    parser.add_argument("--patience", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    args = parser.parse_args()
    for project in args.projects:
        if not (project / "slm").is_dir():
            raise SystemExit(f"ERROR: {project} is not a rendered project (no slm/): give the project's folder")
    sys.path.insert(0, str(args.projects[0].resolve()))  # the projects come from one template: one reader
    print(f"{'project':<56}{'patience':>9}{'stops at':>12}{'steps saved':>13}{'kept':>6}{'best':>6}  best kept")
    for project in args.projects:
        curve, scheduled = evaluations(project)
        best = min(curve, key=lambda evaluation: evaluation[1])[0]
        for patience in args.patience:
            stop, kept = replay(curve, patience)
            ran = stop or scheduled
            print(
                f"{project.name:<56}{patience:>9}{ran:>6} of {scheduled:<4}{1 - ran / scheduled:>12.0%}"
                f"{kept:>6}{best:>6}  {'yes' if kept == best else 'NO'}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
