"""Can the fidelity check fail? Each real Phi shape exported from a config.json with one value made wrong, side by side
with its true export, against the unchanged PyTorch model.

    python scripts/measure_fidelity.py --tokenizer-from SMOLLM2_DIR [--work DIR] [--models MODEL ...]

For every model of scripts/phi_published.py: its one-layer random-weight shape (scripts/phi_shapes.py), then
for the true config and each of tests/shape_fidelity.py's MUTATIONS that applies to the model, ModelBuilder's
fp32 export (`shape_fidelity.py export`, the weights unchanged) compared with the PyTorch model of the true
config (`shape_fidelity.py compare`): the largest logit difference on the short prompts and on the same prompts
far into the context. A row is caught when either is above the tests' tolerance (LOGIT_TOLERANCE). Each step is
a process of its own, one at a time. SMOLLM2_DIR: the offline demo model, as `python setup/get_model.py` of a
SmolLM2 project writes it. Run with the template's test environment (scripts/env.sh).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))
from phi_published import PUBLISHED_CONFIGS  # noqa: E402
from shape_fidelity import LOGIT_TOLERANCE, MUTATIONS  # noqa: E402

FIDELITY = ROOT / "tests/shape_fidelity.py"


def run(*args, check=True):
    done = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True)
    if check and done.returncode not in (0, 3):
        sys.exit(f"ERROR: {' '.join(map(str, args))} failed:\n{done.stderr[-3000:]}")
    return done


def measure(shape, config_dir, work):
    """Export config_dir's model (shape's weights) and compare it with shape's PyTorch model; a failed export
    (the builder refusing the config) is a result too."""
    exported = work / (config_dir.name + "-fp32")
    started = time.monotonic()
    export = run(FIDELITY, "export", config_dir, exported, work / "builder-cache", check=False)
    if export.returncode != 0:
        return {"failed": export.stderr.strip().splitlines()[-1][:200], "seconds": time.monotonic() - started}
    figures = json.loads(run(FIDELITY, "compare", shape, exported, "none", shape).stdout.strip().splitlines()[-1])
    return figures | {"seconds": time.monotonic() - started}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer-from", required=True, type=Path)
    parser.add_argument("--work", type=Path, help="where the shapes and exports go (default: a temporary folder)")
    parser.add_argument("--models", nargs="+", default=sorted(PUBLISHED_CONFIGS), choices=sorted(PUBLISHED_CONFIGS))
    options = parser.parse_args(argv)
    work = options.work or Path(tempfile.mkdtemp(prefix="fidelity-"))
    shapes = {model: work / model.split("/")[-1] for model in options.models}
    pairs = [str(item) for model in options.models for item in (model, shapes[model])]
    run(ROOT / "scripts/phi_shapes.py", *pairs, "--layers", "1", "--tokenizer-from", options.tokenizer_from)

    print(f"tolerance {LOGIT_TOLERANCE:g} of the largest logit; work folder {work}")
    print("| model | config.json given to the builder | short prompts | far into the context (from) | caught | s |")
    print("|---|---|---|---|---|---|")
    for model, shape in shapes.items():
        for mutation in ("(the true config)", *MUTATIONS):
            config_dir = shape
            if mutation in MUTATIONS:
                config_dir = work / f"{shape.name}-{mutation.replace(' ', '-')}"
                if run(FIDELITY, "mutate", shape, config_dir, mutation).returncode == 3:
                    continue  # the model has no such value
            figures = measure(shape, config_dir, work)
            if "failed" in figures:
                failed = f"the export failed: `{figures['failed']}`"
                print(f"| {model} | {mutation} | {failed} | | yes | {figures['seconds']:.0f} |", flush=True)
                continue
            caught = max(figures["difference"], figures["far_difference"]) > LOGIT_TOLERANCE
            print(
                f"| {model} | {mutation} | {figures['difference']:.3g} | {figures['far_difference']:.3g} "
                f"({figures['far_position']}) | {'yes' if caught else 'no'} | {figures['seconds']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
