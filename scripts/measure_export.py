"""The export search on rendered projects: what each int4 recipe scored, what was kept, what it cost.

    python scripts/measure_export.py PROJECT [PROJECT ...]

Each PROJECT is a rendered project whose data is in place (the sample, or `prepare.py FILE` done).
For each: a fresh `olive run` (its cache, model and checkpoints removed; the log kept in
gen-model/olive-run.log), timed, with the export search's share of it read from Olive's log (from
the first candidate's evaluation to the end, against everything before it); `fine-tuning/report.py`
(the candidate table); then, on the held-out rows the search never saw, `infer.py --eval --model`
on every candidate (with its adapter, for an adapter export) and the same fine-tune merged in
PyTorch (fp32: the best checkpoint's LoRA weights on the base model). Prints one table per project
and a summary line: the kept recipe's held-out score against fp32.
`--reuse` measures the last run again (its log) without a new `olive run`.
Run it with the template's test environment (scripts/env.sh) on an otherwise idle machine.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from measure_quality import FRESH_RUN_FOLDERS, run

SCORE = re.compile(r"^(accuracy|token_f1): (\d\.\d{3}) \(n=(\d+)\)$", re.MULTILINE)
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+\]", re.MULTILINE)
FIRST_EVALUATION = "Run model evaluation for the final model"

FP32_HELD_OUT = """
from slm.data import load_rows
from slm.engines import ENGINES, load_tokenizer
from slm.generation import TextGenerator
from slm.generation import Prompter
from slm.metrics import score
from slm.export.olive_eval import best_adapter
from slm.project import Project

project = Project.load()
rows = load_rows(project.eval_file, project.task)
engine = ENGINES["torch"](project.base_model_dir, "cpu", lora_dir=best_adapter(project))
prompter = Prompter(project, TextGenerator(engine, load_tokenizer(project.base_model_dir)))
print(score([prompter.answer_row(row) for row in rows], [project.task.reference(row) for row in rows])[1])
"""

CANDIDATES = """
import json
from slm.export.search_report import candidates
from slm.project import Project
print(json.dumps(candidates(Project.load().output_dir)))
"""


def seconds_at(line_start):
    return datetime.strptime(line_start, "%Y-%m-%d %H:%M:%S").timestamp()


def search_share(log):
    """(seconds before the first candidate's evaluation, seconds from it to the last log line)."""
    stamps = [(match.start(), seconds_at(match.group(1))) for match in STAMP.finditer(log)]
    at = log.find(FIRST_EVALUATION)
    if at < 0 or not stamps:
        return None, None
    first = next(stamp for position, stamp in reversed(stamps) if position <= at)
    return first - stamps[0][1], stamps[-1][1] - first


def measure(project, env, reuse=False):
    import json

    log_file = project / "gen-model/olive-run.log"
    if reuse:
        log, seconds = log_file.read_text(encoding="utf-8"), float("nan")
    else:
        for folder in FRESH_RUN_FOLDERS:
            shutil.rmtree(project / "gen-model" / folder, ignore_errors=True)
        start = time.perf_counter()
        olive = [sys.executable, "-m", "olive", "run", "--config", "fine-tuning/olive-config.json"]
        # Olive logs (with their times) to stderr and the evaluator prints to stdout: one log of both
        finished = subprocess.run(
            olive, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        log = finished.stdout
        if finished.returncode != 0:
            sys.exit(f"ERROR: olive run failed in {project}:\n{log[-3000:]}")
        seconds = time.perf_counter() - start
        log_file.write_text(log, encoding="utf-8")
    before, search = search_share(log)
    report = run([sys.executable, "fine-tuning/report.py"], project, env)
    rows = json.loads(run([sys.executable, "-c", CANDIDATES], project, env))
    fp32 = float(run([sys.executable, "-c", FP32_HELD_OUT], project, env).strip().splitlines()[-1])
    for row in rows:
        scored = run([sys.executable, "inferences/infer.py", "--eval", "--model", row["model_dir"]], project, env)
        row["held_out"] = float(SCORE.findall(scored)[-1][1])
    return {"seconds": seconds, "before": before, "search": search, "rows": rows, "fp32": fp32, "report": report}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("projects", nargs="+", type=Path)
    parser.add_argument("--reuse", action="store_true", help="measure the last run (gen-model/olive-run.log) again")
    args = parser.parse_args()
    env = {**os.environ, "OLIVE_DISABLE_TELEMETRY": "1"}
    summary = []
    for project in args.projects:
        project = project.resolve()
        result = measure(project, {**env, "PYTHONPATH": str(project)}, args.reuse)
        share = (
            f"; search {result['search']:.0f} s after {result['before']:.0f} s "
            f"(+{100 * result['search'] / result['before']:.0f}%)"
            if result["search"] is not None
            else ""
        )
        print(f"\n{project.name}: olive run {result['seconds']:.0f} s{share}; held-out fp32 {result['fp32']:.3f}")
        print(f"{'recipe':<40}{'validation':>11}{'val fp32':>9}{'held-out':>9}{'tokens/s':>9}{'MB':>7}  kept")
        for row in result["rows"]:
            fp32 = f"{row['fp32_score']:.3f}" if row["fp32_score"] is not None else "-"
            print(
                f"{row['recipe']:<40}{row['score']:>11.3f}{fp32:>9}{row['held_out']:>9.3f}"
                f"{row['tokens_per_second']:>9.1f}{row['size_mb']:>7.1f}  {'yes' if row['kept'] else ''}",
                flush=True,
            )
        kept = next((row for row in result["rows"] if row["kept"]), None)
        if kept:
            summary.append(
                f"{project.name}: kept {kept['recipe']}, held-out {kept['held_out']:.3f} against fp32 "
                f"{result['fp32']:.3f} ({100 * (kept['held_out'] - result['fp32']):+.1f} points)"
            )
    print("\n" + "\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
