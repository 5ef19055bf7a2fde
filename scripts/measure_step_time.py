"""The forecast's time per training step against the time each finished run took, side by side.

    python scripts/measure_step_time.py PROJECT [PROJECT ...]

Each PROJECT is a rendered project after `olive run` (e.g. from scripts/measure_datasets.py), with its base model's
tokenizer in model-cache/. For each: its training rows' token lengths (prepare.py's counting), the tokens of its
steps (each batch of the schedule's row order padded to its longest row, cut at max_seq_len:
slm.train.schedule.project_step_tokens), the seconds per step it measured (gen-model/report/training-summary.txt:
training time over steps run, evaluations and checkpoint saves included), the forecast before this script's
change (one figure per model whatever the rows: FLAT_FORECAST) and the forecast now (slm.train.footprint, this
checkout's). Then the least-squares line through the measured points: how footprint.py's step_seconds are fitted.
No model is run: tokenizers and JSON only.
"""

import argparse
import json
import os
import re
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TEMPLATE / "{{cookiecutter.project_slug}}"))  # this checkout's slm, not the project's
from slm.data import load_rows  # noqa: E402
from slm.project import Project  # noqa: E402
from slm.train import footprint  # noqa: E402
from slm.train.data_report import row_lengths  # noqa: E402
from slm.train.schedule import Schedule, project_step_tokens  # noqa: E402

# seconds per step of 8 rows the forecast gave every SmolLM2 run before it read the rows' length
FLAT_FORECAST = {"SmolLM2-135M-Instruct": 1.8}
TRAINED = re.compile(r"(?:step (\d+) of \d+|steps (\d+)).*training (\d+) s")


def measured(project: Path) -> tuple[int, float]:
    """(steps run, training seconds) from the run's summary."""
    summary = project / "gen-model" / "report" / "training-summary.txt"
    if not summary.is_file():
        raise SystemExit(f"ERROR: {summary} not found: run olive run in {project} first")
    found = TRAINED.search(summary.read_text(encoding="utf-8"))
    if not found:
        raise SystemExit(f"ERROR: {summary} names no steps and training time")
    return int(found.group(1) or found.group(2)), float(found.group(3))


def figures(folder: Path) -> dict:
    here = Path.cwd()
    os.chdir(folder)  # the project's paths (config, data, model-cache) are relative to its root
    try:
        project = Project.load()
        rows = load_rows(project.train_file, project.task)  # columns or conversations, as olive run reads them
        lengths, _ = row_lengths(project, rows)
        steps, seconds = measured(Path("."))
        schedule = Schedule(len(rows), project.batch_size, 1, steps, steps)  # the steps it ran, in its row order
        tokens = project_step_tokens(project, schedule, lengths)
        forecast = footprint.forecast(project).for_rows(tokens)
        flat = FLAT_FORECAST.get(forecast.basis)
    finally:
        os.chdir(here)
    return {
        "project": f"{folder.parent.name}/{folder.name}",
        "rows": len(rows),
        "mean_tokens": sum(lengths) / len(lengths),
        "steps": steps,
        "tokens_per_step": tokens[0],
        "measured": seconds / steps,
        "before": flat * project.batch_size / 8 if flat else None,
        "now": forecast.seconds_per_step,
    }


def least_squares(points: list[tuple[float, float]]) -> tuple[float, float]:
    count = len(points)
    mean_x = sum(x for x, _ in points) / count
    mean_y = sum(y for _, y in points) / count
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
    return mean_y - slope * mean_x, slope


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("projects", nargs="+", type=Path)
    args = parser.parse_args()
    results = [figures(project.resolve()) for project in args.projects]
    print("| project | rows | tokens a row | steps | tokens a step | s/step measured | forecast before | now |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        before = f"{r['before']:.2f} ({r['before'] / r['measured'] - 1:+.0%})" if r["before"] else "-"
        print(
            f"| {r['project']} | {r['rows']} | {r['mean_tokens']:.1f} | {r['steps']} | {r['tokens_per_step']:.0f} | "
            f"{r['measured']:.2f} | {before} | {r['now']:.2f} ({r['now'] / r['measured'] - 1:+.0%}) |"
        )
    if len({round(r["tokens_per_step"]) for r in results}) > 1:
        fixed, per_token = least_squares([(r["tokens_per_step"], r["measured"]) for r in results])
        print(f"least squares: {fixed:.2f} s + {per_token * 1000:.2f} s per 1,000 tokens of a step")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
