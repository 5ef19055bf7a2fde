"""A LoRA training step with the loss from every position's logits against the labelled positions' only, side by side.

    python scripts/measure_labelled_logits.py MODEL [--layers N] [--batch 8] [--tokens 47 400] [--answer 4]
        [--steps 3] [--dtype float32] [--gradient-checkpointing]

MODEL is a model folder (the demo's SmolLM2 in model-cache/) or a published Phi name (microsoft/Phi-4-mini-instruct:
its config from scripts/phi_published.py with --layers layers, random weights, no file written). For each --tokens
length: batches of --batch rows that long, random ids, answer-only labels on each row's last --answer tokens (what
slm/train/olive_data.py gives a label task), a LoRA of the template's target modules (r 16) as Olive's LoRA pass
builds it; then, each in a process of its own, --steps timed forward-and-backward steps after one untimed one:
"every position" (transformers' own loss) and "labelled only" (slm/train/labelled_logits.py's inputs). Prints
seconds a step, the process's peak resident memory, and the loss of the first step (the same in both, up to float
rounding). No optimizer step: both modes compute the same gradient, which is what differs in cost.
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))
sys.path.insert(0, str(SCRIPTS.parent / "{{cookiecutter.project_slug}}"))  # this checkout's slm
GIB = 2**30
# the model table's LoRA targets: Llama-style names (SmolLM2) and Phi-3's fused ones
TARGET_MODULES = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "qkv_proj",
    "gate_up_proj",
]


def build_model(args):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    dtype = getattr(torch, args.dtype)
    if Path(args.model).is_dir():
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype)
    else:
        from phi_shapes import hub_config

        config = AutoConfig.for_model(**hub_config(args.model, args.layers))
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    lora = LoraConfig(r=16, lora_alpha=32, target_modules=[name for name in TARGET_MODULES if name in present])
    return get_peft_model(model, lora), model.config.vocab_size


def one_mode(args, mode: str, tokens: int) -> dict:
    import torch
    from slm.train.labelled_logits import IGNORE_INDEX, labelled_positions_only

    torch.manual_seed(0)
    model, vocab = build_model(args)
    ids = torch.randint(3, vocab - 1, (args.batch, tokens))
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, -args.answer :] = ids[:, -args.answer :]
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    if mode == "labelled only":
        inputs = labelled_positions_only(inputs)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB

    def step():
        model.zero_grad()
        loss = model(**inputs).loss
        loss.backward()
        return loss.item()

    loss = step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - start) / args.steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
    return {"seconds": seconds, "peak_gib": peak, "model_gib": before, "loss": loss}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--layers", type=int, help="a published Phi shape cut to this many layers")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, nargs="+", default=[47, 400], help="tokens a row")
    parser.add_argument("--answer", type=int, default=4, help="labelled tokens at the end of each row")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "TOKENS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_mode(args, args.child[0], int(args.child[1]))))
        return
    shape = f"{args.layers or 'all'} layers, {args.dtype}"
    print(f"{args.model} ({shape}), batch {args.batch}, the last {args.answer} tokens of each row labelled")
    print("| tokens a row | mode | s/step | peak GiB (model alone) | first loss |")
    print("|---|---|---|---|---|")
    for tokens in args.tokens:
        for mode in ("every position", "labelled only"):
            child = subprocess.run(
                [sys.executable, __file__, *sys.argv[1:], "--child", mode, str(tokens)],
                capture_output=True,
                text=True,
                check=True,
            )
            figures = json.loads(child.stdout.strip().splitlines()[-1])
            print(
                f"| {tokens} | {mode} | {figures['seconds']:.2f} | {figures['peak_gib']:.2f} "
                f"({figures['model_gib']:.2f}) | {figures['loss']:.4f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
