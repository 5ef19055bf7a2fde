"""What `olive run` costs on a real-shape Phi: the whole run of a rendered project, its process tree sampled.

    python scripts/measure_full_size.py --work DIR --tokenizer-from SMOLLM2_DIR [--model MODEL] [--layers N]
        [--steps 2] [--answer KEY=VALUE ...] [--set DOTTED.KEY=JSON ...] [--env NAME=VALUE ...]
        [--template-dir DIR] [--decode-tokens 32] [--data FILE]

1. A random-weight model of MODEL's published shape (scripts/phi_shapes.py, bfloat16 as the hub ships it; the
   full 32 layers unless --layers) is written to DIR/<name>-<layers>L, or reused when it is there.
2. The template is rendered with every answer at its default but `base_model` MODEL, `local_model_path` that
   folder and `__max_steps` --steps (plus each --answer), into DIR/project (replaced); each --set then changes
   one key of its fine-tuning/olive-config.json (a trial of a setting; --template-dir: another checkout, for a
   before/after pair). With --data, `python datasets/prepare.py FILE` then replaces the sample's rows (rows of
   another length: its forecast is printed beside what the run measures).
3. `python -m olive run --config fine-tuning/olive-config.json` runs there as a user runs it. The resident memory of
   its whole process tree (the run and every child: the decode timing of the export search) is summed every
   SAMPLE_SECONDS; Olive's log lines `Running pass NAME` / `Pass NAME finished` cut the run into stages (after a
   ModelBuilder pass, its candidate's scoring by the export search).
4. With --decode-tokens, the exported model decodes in a process of its own: first-token time of a 128-token
   prompt, then tokens/s.

Prints the stage table (wall, peak GiB) and the whole run's peak, then the same as JSON. Not part of the test
suite: the full size needs about 25 GB of disk and 20-30 minutes on 2 cores.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

SCRIPTS = Path(__file__).resolve().parent
TEMPLATE = SCRIPTS.parent
GIB = 2**30
SAMPLE_SECONDS = 0.5
MODELS = ("microsoft/Phi-3-mini-4k-instruct", "microsoft/Phi-4-mini-instruct")
STARTED = re.compile(r"Running pass (\S+?):")
FINISHED = re.compile(r"Pass (\S+?):\S+ finished in")


def base_model(args) -> Path:
    """The random-weight shape, written in a process of its own (its memory is not the run's)."""
    layers = args.layers or 32
    folder = args.work / f"{args.model.split('/')[-1]}-{layers}L"
    if not (folder / "config.json").is_file():
        command = [sys.executable, str(SCRIPTS / "phi_shapes.py"), args.model, str(folder)]
        subprocess.run([*command, "--tokenizer-from", str(args.tokenizer_from), "--layers", str(layers)], check=True)
    return folder


def render(args, model_dir: Path) -> Path:
    """The rendered project, with each --set applied to its Olive config."""
    from measure_quality import render_template, set_config_keys

    project = args.work / "project"
    shutil.rmtree(project, ignore_errors=True)
    answers = {
        "project_slug": "project",
        "base_model": args.model,
        "local_model_path": str(model_dir),
        "__max_steps": str(args.steps),
        "__download_model": "no",
        "install_dependencies": "no",
        **dict(answer.split("=", 1) for answer in args.answer),
    }
    render_template(args.template, args.work, answers)
    set_config_keys(project, args.set)
    return project


def prepare_data(project: Path, data: Path) -> str:
    """prepare.py on the file, as a user runs it: its summary (the data report and the forecast)."""
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(project), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "datasets/prepare.py", str(data.resolve())]
    return subprocess.run(command, cwd=project, env=environment, capture_output=True, text=True, check=True).stdout


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.Error:  # ended between the listing and the reading
            pass
    return total


def run_olive(project: Path, env: dict, log_path: Path, kill_above: float | None = None):
    """Run olive run; returns (exit status, [(seconds, stage label) at each stage start], [(seconds, rss bytes)]).
    kill_above: GiB of the process tree at which the run is killed (a machine shared with other work)."""
    # the project's package first, then what PYTHONPATH held (wheels installed with --target on a lent GPU machine)
    python_path = os.pathsep.join(filter(None, [str(project), os.environ.get("PYTHONPATH")]))
    environment = {**os.environ, "OLIVE_DISABLE_TELEMETRY": "1", "PYTHONPATH": python_path, **env}
    command = [sys.executable, "-m", "olive", "run", "--config", "fine-tuning/olive-config.json"]
    start = time.perf_counter()
    child = subprocess.Popen(
        command, cwd=project, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    marks = [(0.0, "start")]
    counts = {}

    def read_log():
        with log_path.open("w", encoding="utf-8") as log:
            for line in child.stdout:
                log.write(line)
                log.flush()
                if started := STARTED.search(line):
                    name = started.group(1)
                    counts[name] = counts.get(name, 0) + 1
                    marks.append((time.perf_counter() - start, f"{name} #{counts[name]}"))
                elif finished := FINISHED.search(line):
                    # what follows a pass until the next one: the export search scoring its candidate
                    name = finished.group(1)
                    marks.append((time.perf_counter() - start, f"after {name} #{counts.get(name, 1)}"))

    reader = threading.Thread(target=read_log)
    reader.start()
    process = psutil.Process(child.pid)
    samples = []
    while child.poll() is None:
        samples.append((time.perf_counter() - start, tree_rss(process)))
        if kill_above and samples[-1][1] > kill_above * GIB:
            for member in [*process.children(recursive=True), process]:
                member.kill()
            child.wait()
            print(f"killed at {samples[-1][1] / GIB:.1f} GiB after {samples[-1][0]:.0f} s", flush=True)
            break
        time.sleep(SAMPLE_SECONDS)
    reader.join()
    marks.append((time.perf_counter() - start, "end"))
    return child.returncode, marks, samples


def stage_table(marks, samples):
    """[(stage, wall seconds, peak GiB)] between consecutive marks; a pass taken from Olive's cache (no sample
    inside) is left out."""
    rows = []
    for (begin, label), (end, _) in zip(marks, marks[1:], strict=False):
        inside = [rss for when, rss in samples if begin <= when < end]
        if inside:
            rows.append((label, end - begin, max(inside) / GIB))
    return rows


def decode(model_dir: Path, tokens: int) -> str:
    code = f"""
import time, onnxruntime_genai as og
model = og.Model({str(model_dir)!r})
prompt = list(range(1000, 1128))
params = og.GeneratorParams(model)
params.set_search_options(max_length=len(prompt) + {tokens}, min_length=len(prompt) + {tokens})
generator = og.Generator(model, params)
start = time.perf_counter(); generator.append_tokens(prompt); generator.generate_next_token()
first = time.perf_counter() - start
start = time.perf_counter()
for _ in range({tokens} - 1):
    generator.generate_next_token()
speed = ({tokens} - 1) / (time.perf_counter() - start)
print(f"first token of a 128-token prompt {{first:.2f}} s, decode {{speed:.2f}} tokens/s")
"""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for the model and the project")
    parser.add_argument("--tokenizer-from", type=Path, help="a SmolLM2-135M-Instruct model folder (for the shape)")
    parser.add_argument("--model", choices=MODELS, default=MODELS[0])
    parser.add_argument("--layers", type=int, help="fewer layers than the published 32 (a trial)")
    parser.add_argument("--steps", type=int, default=2, help="training steps (__max_steps)")
    parser.add_argument("--answer", action="append", default=[], help="KEY=VALUE: a template answer")
    parser.add_argument("--set", action="append", default=[], help="DOTTED.KEY=JSON: a key of the Olive config")
    parser.add_argument("--template-dir", dest="template", type=Path, default=TEMPLATE, help="a template checkout")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for olive run's environment")
    parser.add_argument("--kill-above", type=float, help="kill the run when its process tree passes this many GiB")
    parser.add_argument("--decode-tokens", type=int, default=0, help="decode the export this many tokens (0: no)")
    parser.add_argument("--data", type=Path, help="a data file for prepare.py instead of the sample's rows")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    model_dir = base_model(args)
    project = render(args, model_dir)
    if args.data:
        print(prepare_data(project, args.data), flush=True)
    log = args.work / "olive-run.log"
    code, marks, samples = run_olive(project, dict(pair.split("=", 1) for pair in args.env), log, args.kill_above)
    rows = stage_table(marks, samples)
    print(f"olive run of {args.model} ({args.layers or 32} layers), exit {code}, log {log}")
    print("| stage | wall | peak resident (process tree) |\n|---|---|---|")
    for label, wall, peak in rows:
        print(f"| {label} | {wall:.0f} s | {peak:.1f} GiB |")
    peak = max((rss for _, rss in samples), default=0) / GIB
    exported = project / "gen-model" / "model"
    print(f"whole run: {marks[-1][0]:.0f} s, peak {peak:.1f} GiB; model written: {any(exported.glob('*.onnx'))}")
    summary = project / "gen-model" / "report" / "training-summary.txt"
    if summary.is_file():  # the training's own time (fine-tuning/report.py's, written by the LoRA pass)
        print(summary.read_text(encoding="utf-8").strip())
    result = {"exit": code, "stages": rows, "peak_gib": peak, "seconds": marks[-1][0]}
    if args.decode_tokens and code == 0:
        result["decode"] = decode(exported, args.decode_tokens)
        print(result["decode"])
    print(json.dumps(result))
    return code


if __name__ == "__main__":
    sys.exit(main())
