"""What a full-size Phi-3-mini costs on this machine: each stage of the project alone, its wall time and peak memory.

    python scripts/measure_full_size.py --tokenizer-from SMOLLM2_DIR --work DIR [--stages build,lora,merge,export,speed]

A random-weight 32-layer Phi-3-mini-4k-instruct (3.8B parameters, the published config.json: scripts/phi_shapes.py,
bfloat16 as the hub ships it) goes through the stages `olive run` chains, each in a process of its own so that
its peak resident memory is its own (the parent reads it from the child's rusage):

- lora: the LoRA pass's training step with the template's settings for this model (r 64, alpha 64, dropout 0.05,
  the four Phi-3 projections, learning rate 1e-4, fp32 on CPU, batch 4 = the table's), on rows of 256 tokens;
  seconds per step. `--gradient-checkpointing` recomputes activations in the backward pass instead of keeping them.
- merge: the base model with the trained adapter merged in, saved as MergeAdapterWeights saves it (fp32).
- export: ModelBuilder int4 on the merged model with the template's CPU settings and the model table's first recipe (or
  `--int4-recipe`), as the builder pass runs it.
- speed: the int4 model on ONNX Runtime GenAI: time to the first token of a 128-token prompt, then decode tokens/s.

Not part of the test suite: it needs about 45 GB of disk and an hour or more on 2 cores.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))
sys.path.insert(0, str(SCRIPTS.parent))
MODEL = "microsoft/Phi-3-mini-4k-instruct"
STAGES = ("build", "lora", "merge", "export", "speed")
ROW_TOKENS = 256


def training_settings():
    """The template's LoRA settings for MODEL, from its model table."""
    import template_logic

    row = template_logic.MODELS[MODEL]
    return {
        "r": int(row["training"]["lora_r"]),
        "alpha": float(row["training"]["lora_alpha"]),
        "learning_rate": float(row["training"]["learning_rate"]),
        "batch": int(row["training"]["batch_size"]),
        "target_modules": template_logic.TARGET_MODULES[row["architecture"]],
    }


def stage_build(args):
    from phi_shapes import write_shape

    write_shape(MODEL, args.work / "base", args.tokenizer_from, layers=args.layers)
    return f"{args.layers or 32} layer(s), bfloat16 on disk"


def stage_lora(args):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    settings = training_settings()
    torch.manual_seed(0)
    network = AutoModelForCausalLM.from_pretrained(args.work / "base", dtype=torch.float32)
    if args.gradient_checkpointing:
        network.gradient_checkpointing_enable()
        network.enable_input_require_grads()
    lora = LoraConfig(
        r=settings["r"],
        lora_alpha=settings["alpha"],
        lora_dropout=0.05,
        target_modules=settings["target_modules"],
        task_type="CAUSAL_LM",
    )
    network = get_peft_model(network, lora)
    network.train()
    optimizer = torch.optim.AdamW([p for p in network.parameters() if p.requires_grad], lr=settings["learning_rate"])
    seconds = []
    for _ in range(args.steps):
        ids = torch.randint(0, 32000, (settings["batch"], ROW_TOKENS))
        start = time.perf_counter()
        loss = network(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        seconds.append(time.perf_counter() - start)
        print(f"step {len(seconds)}: {seconds[-1]:.1f} s", flush=True)
    network.save_pretrained(args.work / "adapter")
    per_step = ", ".join(f"{s:.1f}" for s in seconds)
    return f"batch {settings['batch']} x {ROW_TOKENS} tokens: {per_step} s/step"


def stage_merge(args):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    network = AutoModelForCausalLM.from_pretrained(args.work / "base", dtype=torch.float32)
    network = PeftModel.from_pretrained(network, args.work / "adapter").merge_and_unload()
    network.save_pretrained(args.work / "merged")
    AutoTokenizer.from_pretrained(args.work / "base").save_pretrained(args.work / "merged")
    return "fp32 on disk"


def stage_export(args):
    from onnxruntime_genai.models.builder import create_model

    import template_logic

    # the model table's first int4 recipe (the one built alone with the export search off), or --int4-recipe
    recipe = args.int4_recipe or template_logic.MODELS[MODEL]["int4_recipe"]
    settings = {**template_logic.CPU_INT4, **template_logic.builder_loading_settings()["extra_options"]}
    settings["int4_algo_config"] = recipe
    merged = str(args.work / "merged")
    create_model(
        model_name=merged,
        input_path=merged,
        output_dir=str(args.work / "int4"),
        precision="int4",
        execution_provider="cpu",
        cache_dir=str(args.work / "builder-cache"),
        filename="model.onnx",
        **settings,
    )
    size = sum(f.stat().st_size for f in (args.work / "int4").iterdir()) / 2**30
    return f"int4 ({settings['int4_algo_config']}), {size:.2f} GiB on disk"


def stage_speed(args):
    import onnxruntime_genai as og

    model = og.Model(str(args.work / "int4"))
    prompt = list(range(1000, 1000 + 128))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + args.decode_tokens, min_length=len(prompt) + args.decode_tokens)
    generator = og.Generator(model, params)
    start = time.perf_counter()
    generator.append_tokens(prompt)
    generator.generate_next_token()
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.decode_tokens - 1):
        generator.generate_next_token()
    decode = (args.decode_tokens - 1) / (time.perf_counter() - start)
    return f"first token of a {len(prompt)}-token prompt {first:.2f} s, decode {decode:.2f} tokens/s"


def run_stage(name, argv):
    """Run one stage in a child process: (wall seconds, peak resident GiB, its result line, exit status)."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, "--stage", name, *argv], stdout=subprocess.PIPE, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    result = [line[len("RESULT ") :] for line in output.splitlines() if line.startswith("RESULT ")]
    return wall, usage.ru_maxrss / 2**20, result[-1] if result else "failed", os.waitstatus_to_exitcode(status)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for the models (about 45 GB)")
    parser.add_argument("--tokenizer-from", type=Path, help="a SmolLM2-135M-Instruct model folder (for build)")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--steps", type=int, default=3, help="LoRA steps timed")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--int4-recipe", help="int4_algo_config instead of the template's")
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--layers", type=int, help="fewer layers than the published 32 (a quick trial of the script)")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        print("RESULT " + globals()[f"stage_{args.stage}"](args), flush=True)
        return 0
    passed = ["--work", str(args.work), "--steps", str(args.steps), "--decode-tokens", str(args.decode_tokens)]
    passed += ["--tokenizer-from", str(args.tokenizer_from)] if args.tokenizer_from else []
    passed += ["--layers", str(args.layers)] if args.layers else []
    passed += ["--gradient-checkpointing"] if args.gradient_checkpointing else []
    passed += ["--int4-recipe", args.int4_recipe] if args.int4_recipe else []
    rows = []
    for name in args.stages.split(","):
        wall, peak, result, code = run_stage(name, passed)
        rows.append((name, wall, peak, result if code == 0 else f"exit {code}: {result}"))
        print(f"| {name} | {wall:.0f} s | {peak:.1f} GiB | {rows[-1][3]} |", flush=True)
        if code != 0:
            break
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
