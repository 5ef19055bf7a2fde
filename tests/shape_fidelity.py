"""The fidelity of a ModelBuilder export against the PyTorch model it came from, in a process of its own
(the models of the real shapes take gigabytes; tests/test_real_shapes.py runs this so pytest stays small).

    python tests/shape_fidelity.py export MERGED_DIR OUT_DIR CACHE_DIR
    python tests/shape_fidelity.py compare PYTORCH_DIR FP32_ONNX_DIR INT4_ONNX_DIR|none TOKENIZER_DIR \
        [--export-fp32 CACHE_DIR]

`export` writes ModelBuilder's fp32 export of MERGED_DIR; `compare --export-fp32` writes it first (of
PYTORCH_DIR, into FP32_ONNX_DIR) in the same process.

`compare` prints one JSON line: `difference`, the largest |fp32 ONNX - PyTorch| logit over the largest |PyTorch|
logit, over every position of PROMPTS; `greedy`, the share of positions whose int4 arg-max is fp32's; `top5`, the
share whose fp32 arg-max is among int4's five highest.
"""

import json
import sys
from pathlib import Path

import numpy as np

PROMPTS = (
    "### Text: I finally got the job!\n### The tone is:\n",
    "### Text: The storm knocked out power all night and the whole street went dark.\n### The tone is:\n",
    "### Text: Wait, you were there the whole time?\n### The tone is:\n",
)


def export_fp32(merged, out, cache):
    """ModelBuilder's fp32 export of a merged model, read as the template's builder pass reads it."""
    from onnxruntime_genai.models.builder import create_model

    create_model(
        model_name=str(merged),
        input_path=str(merged),
        output_dir=str(out),
        precision="fp32",
        execution_provider="cpu",
        cache_dir=str(cache),
        filename="model.onnx",
        hf_remote=False,
    )


class OnnxLogits:
    """The logits of every position of a prompt: one forward pass of a ModelBuilder model, empty KV cache."""

    def __init__(self, model_dir):
        import onnxruntime

        self.decoder = json.loads((model_dir / "genai_config.json").read_text())["model"]["decoder"]
        self.session = onnxruntime.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])

    def __call__(self, ids):
        decoder = self.decoder
        empty = np.zeros((1, decoder["num_key_value_heads"], 0, decoder["head_size"]), dtype=np.float32)
        feeds = {"input_ids": np.array([ids], dtype=np.int64), "attention_mask": np.ones((1, len(ids)), np.int64)}
        for layer in range(decoder["num_hidden_layers"]):
            feeds |= {f"past_key_values.{layer}.key": empty, f"past_key_values.{layer}.value": empty}
        inputs = {given.name: feeds[given.name] for given in self.session.get_inputs()}
        return self.session.run(["logits"], inputs)[0][0]


class TorchLogits:
    def __init__(self, model_dir):
        import torch
        from transformers import AutoModelForCausalLM

        self.network = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)

    def __call__(self, ids):
        import torch

        with torch.no_grad():
            return self.network(torch.tensor([ids])).logits[0].numpy()


def fidelity(reference, fp32, int4, prompt_ids):
    """The largest |fp32 ONNX - PyTorch| logit over the largest |PyTorch| logit; the share of positions whose
    int4 arg-max is fp32's; the share whose fp32 arg-max is among int4's five highest."""
    differences, greedy, top5 = [], [], []
    for ids in prompt_ids:
        expected, exported = reference(ids), fp32(ids)
        differences.append(float(np.abs(exported - expected).max() / np.abs(expected).max()))
        if int4 is None:
            continue
        quantized = int4(ids)
        best = exported.argmax(axis=-1)
        greedy.extend(quantized.argmax(axis=-1) == best)
        top5.extend((np.argsort(quantized, axis=-1)[:, -5:] == best[:, None]).any(axis=-1))
    if int4 is None:
        return max(differences), None, None
    return max(differences), float(np.mean(greedy)), float(np.mean(top5))


def compare(reference_dir, fp32_dir, int4_dir, tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    prompt_ids = [tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in PROMPTS]
    reference, fp32 = TorchLogits(reference_dir), OnnxLogits(fp32_dir)
    int4 = OnnxLogits(int4_dir) if int4_dir.name != "none" else None
    difference, greedy, top5 = fidelity(reference, fp32, int4, prompt_ids)
    return {"difference": difference, "greedy": greedy, "top5": top5}


if __name__ == "__main__":
    command, *paths = sys.argv[1:]
    if command == "export":
        export_fp32(*map(Path, paths))
    else:
        if "--export-fp32" in paths:
            at = paths.index("--export-fp32")
            cache = paths.pop(at + 1)
            paths.pop(at)
            export_fp32(Path(paths[0]), Path(paths[1]), Path(cache))
        print(json.dumps(compare(*map(Path, paths))))
