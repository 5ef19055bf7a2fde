"""What a user gets on their own data with the default answers: SmolLM2, `prepare.py FILE`, `olive run`.

    python scripts/measure_datasets.py FILE.csv [FILE.csv ...] [--template TEMPLATE] [--answer NAME=VALUE ...]
                                       [--set DOTTED.KEY=JSON ...] [--out DIR]

Each FILE is a CSV (or TSV / JSON / JSON Lines) with an input and an answer column, the two columns
of --template (default `Text: {text}\\nLabel: {label}`: a template any user might write). For each
file it renders a project with only the base model and the text template chosen, gets the model the
project's own way, runs `python datasets/prepare.py FILE`, a fresh `olive run` (timed),
`python fine-tuning/report.py` and `python inferences/infer.py --eval`, and prints one table: rows,
steps, epochs, the best step, `olive run` time, and the held-out score (accuracy for a small label
set, token F1 for free text). --answer adds an answer to compare a setting (e.g. `__max_steps=100`),
--set a key of the rendered Olive config (measure_quality.py's --set).
Run it with the template's test environment (scripts/env.sh) on an otherwise idle machine.
"""

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

from measure_quality import (
    DEMO_MODEL,
    FRESH_RUN_FOLDERS,
    TEMPLATE,
    render_template,
    run,
    set_config_keys,
    variant_suffix,
)

SCORE = re.compile(r"^(accuracy|token_f1): (\d\.\d{3}) \(n=(\d+)\)$", re.MULTILINE)
# report.py's line: `rows R, steps S, epochs E, best step B ...`, or after an early stop
# `rows R, stopped early at step S of T: ...; best step B (...), epochs E of P` (steps then reads "S of T")
SUMMARY_FIGURES = (
    r"^rows (\d+)",
    r"^rows \d+, (?:steps|stopped early at step) (\d+(?: of \d+)?)",
    r"epochs ([\d.]+)",
    r"best step (\d+)",
)


def summary_figures(report):
    """rows, steps, epochs run and the best step from report.py's output."""
    return [re.search(pattern, report, re.MULTILINE).group(1) for pattern in SUMMARY_FIGURES]


def render(out, source, template, extra_answers, settings=(), template_dir=TEMPLATE):
    slug = re.sub(r"[^a-z0-9.-]+", "-", f"data-{source.stem}{variant_suffix(extra_answers, settings)}".lower())
    answers = {"base_model": DEMO_MODEL, "text_template": template, "project_slug": slug, "install_dependencies": "no"}
    project = render_template(template_dir, out, {**answers, **extra_answers})
    set_config_keys(project, settings)
    return project


def measure(project, source, env):
    run([sys.executable, "setup/get_model.py"], project, env)
    shutil.copy(source, project / "datasets" / source.name)
    prepared = run([sys.executable, "datasets/prepare.py", f"datasets/{source.name}"], project, env)
    for folder in FRESH_RUN_FOLDERS:
        shutil.rmtree(project / "gen-model" / folder, ignore_errors=True)
    start = time.perf_counter()
    run([sys.executable, "-m", "olive", "run", "--config", "fine-tuning/olive-config.json"], project, env)
    seconds = time.perf_counter() - start
    metric, score, count = SCORE.findall(run([sys.executable, "inferences/infer.py", "--eval"], project, env))[-1]
    if (project / "fine-tuning/report.py").is_file():
        report = run([sys.executable, "fine-tuning/report.py"], project, env)
        rows, steps, epochs, best = summary_figures(report)
    else:  # a template version before the training report: its fixed step count, no validation
        steps = re.search(r'"max_steps": (\d+)', (project / "fine-tuning/olive-config.json").read_text()).group(1)
        rows = len(json.loads((project / "datasets/train.json").read_text(encoding="utf-8")))
        epochs, best = int(steps) * 8 / rows, "-"
    last = prepared.strip().splitlines()[-1]
    print(f"  {project.name}: {last}; olive run {seconds:.0f} s, {metric} {score}", flush=True)
    return (source.name, int(rows), str(steps), float(epochs), best, seconds, metric, float(score), int(count))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--template", default="Text: {text}\\nLabel: {label}")
    parser.add_argument("--answer", action="append", default=[], metavar="NAME=VALUE", help="an extra answer")
    parser.add_argument("--set", action="append", default=[], metavar="DOTTED.KEY=JSON", help="an Olive config key")
    parser.add_argument("--out", type=Path, default=Path("datasets-output"))
    parser.add_argument(
        "--template-dir", type=Path, default=TEMPLATE, help="another checkout of the template, for a before/after"
    )
    args = parser.parse_args()
    extra_answers = dict(item.split("=", 1) for item in args.answer)
    env = {**os.environ, "OLIVE_DISABLE_TELEMETRY": "1"}
    results = []
    for source in args.files:
        project = render(
            args.out.resolve(), source.resolve(), args.template, extra_answers, args.set, args.template_dir
        )
        env_here = {**env, "PYTHONPATH": str(project)}
        run([sys.executable, "fine-tuning/check_config.py"], project, env_here)  # a --set key Olive would ignore
        results.append(measure(project, source.resolve(), env_here))
    header = f"{'data set':<34}{'train rows':>11}{'steps':>11}{'epochs':>8}{'best step':>10}{'olive run (s)':>15}"
    print(f"\n{header}  score")
    for name, rows, steps, epochs, best, seconds, metric, score, count in results:
        figures = f"{rows:>11}{steps:>11}{epochs:>8.2f}{best:>10}{seconds:>15.0f}"
        print(f"{name:<34}{figures}  {metric} {score:.3f} (n={count})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
