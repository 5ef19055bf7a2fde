"""The fidelity of a ModelBuilder export against the PyTorch model it came from, in a process of its own
(the models of the real shapes take gigabytes; tests/test_real_shapes.py runs this so pytest stays small).

    python tests/shape_fidelity.py export MERGED_DIR OUT_DIR CACHE_DIR
    python tests/shape_fidelity.py compare PYTORCH_DIR FP32_ONNX_DIR INT4_ONNX_DIR|none TOKENIZER_DIR \
        [--export-fp32 CACHE_DIR] [--base BASE_DIR]

    python tests/shape_fidelity.py mutate MODEL_DIR OUT_DIR MUTATION

`mutate` writes MODEL_DIR with one value of its config.json made wrong (MUTATIONS; the weights and tokenizer
linked): exported and compared with the unchanged model, it is a builder that read that value wrongly.
`export` writes ModelBuilder's fp32 export of MERGED_DIR; `compare --export-fp32` writes it first (of
PYTORCH_DIR, into FP32_ONNX_DIR) in the same process.

`compare` prints one JSON line: `difference`, the largest |fp32 ONNX - PyTorch| logit over the largest |PyTorch|
logit, over every position of PROMPTS; `far_difference`, the same with the prompts placed far into the context
(`far_position` on: after a KV cache of random keys and values; past the original 4,096-token window where the
model has LongRoPE's long factors, near the end of the window where it has none); `greedy`, the share of
positions whose int4 arg-max is fp32's; `top5`, the share whose fp32 arg-max is among int4's five highest.
With `--base BASE_DIR`, `base_difference`: the fp32 export against the model before fine-tuning, the
difference an export that dropped the LoRA delta would show.
"""

import json
import sys
from pathlib import Path

# numpy, torch and the runtimes are imported where used: tests/test_real_shapes.py imports the settings above its
# functions (LOGIT_TOLERANCE) and is collected by the fast tier too, which has none of them


# fp32 ONNX against PyTorch fp32: the same arithmetic in another order (fused attention, the rotary cache),
# measured 1.5e-6 to 2.1e-6 of the logits' largest magnitude; every wrong config value of MUTATIONS and a
# dropped LoRA delta move them by more (scripts/measure_fidelity.py, docs/measurements.md "Fidelity")
LOGIT_TOLERANCE = 1e-3

PROMPTS = (
    "### Text: I finally got the job!\n### The tone is:\n",
    "### Text: The storm knocked out power all night and the whole street went dark.\n### The tone is:\n",
    "### Text: Wait, you were there the whole time?\n### The tone is:\n",
)


def _longrope(change):
    """A mutation of LongRoPE's `rope_scaling`: `change(rope_scaling)` gives the keys changed; None without LongRoPE."""

    def mutation(config):
        scaling = config.get("rope_scaling") or {}
        if scaling.get("type", scaling.get("rope_type")) != "longrope":
            return None
        return config | {"rope_scaling": scaling | change(scaling)}

    return mutation


def _full_rotary(config):
    """Rotary embedding on the whole head: one LongRoPE factor per rotated pair, so the factor lists grow to match
    (the last factor repeated); transformers refuses a partial_rotary_factor the factor lists do not fit."""
    pairs = config["hidden_size"] // config["num_attention_heads"] // 2
    changed = config | {"partial_rotary_factor": 1.0}
    scaling = config.get("rope_scaling")
    if scaling:
        grow = {
            key: scaling[key] + scaling[key][-1:] * (pairs - len(scaling[key]))
            for key in ("short_factor", "long_factor")
        }
        changed["rope_scaling"] = scaling | grow
    return changed


# A wrong value of a hub config.json, as a builder could read it: each returns the changed config, or None where
# the model has no such value
MUTATIONS = {
    "rope_theta doubled": lambda config: config | {"rope_theta": config["rope_theta"] * 2},
    "LongRoPE short factors doubled": _longrope(
        lambda scaling: {"short_factor": [2 * f for f in scaling["short_factor"]]}
    ),
    "LongRoPE long factors doubled": _longrope(
        lambda scaling: {"long_factor": [2 * f for f in scaling["long_factor"]]}
    ),
    "partial rotary factor 1.0": lambda config: _full_rotary(config) if config.get("partial_rotary_factor") else None,
    "sliding window dropped": lambda config: (
        config | {"sliding_window": None}
        if (config.get("sliding_window") or config["max_position_embeddings"]) < config["max_position_embeddings"]
        else None
    ),
}


def mutate(model_dir, out, mutation):
    """MODEL_DIR with MUTATIONS[mutation] applied to its config.json, the other files linked; False where the
    model has nothing to mutate."""
    true_config = json.loads((model_dir / "config.json").read_text())
    config = MUTATIONS[mutation](true_config)  # each builds a new config; true_config stays as read
    if config is None or config == true_config:  # Phi-4-mini's short factors are all 1.0, for one
        return False
    out.mkdir(parents=True)
    for path in model_dir.iterdir():
        if path.name != "config.json":
            (out / path.name).symlink_to(path.resolve())
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return True


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

    def __call__(self, ids, past=None):
        """`past`: a KV cache, one (key, value) pair of (1, KV heads, length, head size) arrays per layer."""
        import numpy as np

        decoder = self.decoder
        if past is None:
            empty = np.zeros((1, decoder["num_key_value_heads"], 0, decoder["head_size"]), dtype=np.float32)
            past = [(empty, empty)] * decoder["num_hidden_layers"]
        start = past[0][0].shape[2]
        feeds = {
            "input_ids": np.array([ids], dtype=np.int64),
            "attention_mask": np.ones((1, start + len(ids)), np.int64),
            "position_ids": np.arange(start, start + len(ids), dtype=np.int64)[None],
        }
        for layer, (key, value) in enumerate(past):
            feeds |= {f"past_key_values.{layer}.key": key, f"past_key_values.{layer}.value": value}
        inputs = {given.name: feeds[given.name] for given in self.session.get_inputs()}
        return self.session.run(["logits"], inputs)[0][0]


class TorchLogits:
    def __init__(self, model_dir):
        import torch
        from transformers import AutoModelForCausalLM

        self.network = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)

    def __call__(self, ids, past=None):
        import torch
        from transformers import DynamicCache

        with torch.no_grad():
            if past is None:
                return self.network(torch.tensor([ids])).logits[0].numpy()
            start = past[0][0].shape[2]
            cache = DynamicCache([(torch.from_numpy(key), torch.from_numpy(value)) for key, value in past])
            return (
                self.network(
                    torch.tensor([ids]),
                    past_key_values=cache,
                    attention_mask=torch.ones(1, start + len(ids), dtype=torch.long),
                    position_ids=torch.arange(start, start + len(ids))[None],
                )
                .logits[0]
                .numpy()
            )


def far_start(config, tokens):
    """Where the far prompts start: past the original window when the model has long RoPE factors (they apply
    beyond it, in transformers and in ModelBuilder's second rotary cache), else as far as its window allows."""
    original = config.original_max_position_embeddings or config.max_position_embeddings
    return min(original + 64, config.max_position_embeddings - tokens)


def random_past(config, length, seed=0):
    """A KV cache of `length` positions of random keys and values (as both runtimes store them: keys after RoPE)."""
    import numpy as np

    generator = np.random.default_rng(seed)
    heads, size = config.num_key_value_heads, config.hidden_size // config.num_attention_heads
    shape = (1, heads, length, getattr(config, "head_dim", None) or size)
    return [
        tuple(generator.standard_normal(shape, dtype=np.float32) for _ in "kv") for _ in range(config.num_hidden_layers)
    ]


def logits(model, prompt_ids, past=None):
    """The logits of every position of each prompt (after `past`, a KV cache, when given)."""
    return [model(ids, past) for ids in prompt_ids]


def largest_difference(expected, exported):
    """The largest |exported - expected| logit over the largest |expected| logit, over every prompt's positions."""
    import numpy as np

    return max(float(np.abs(out - ref).max() / np.abs(ref).max()) for ref, out in zip(expected, exported, strict=True))


def agreement(fp32, int4):
    """The share of positions whose int4 arg-max is fp32's; the share whose fp32 arg-max is in int4's top five."""
    import numpy as np

    greedy, top5 = [], []
    for exported, quantized in zip(fp32, int4, strict=True):
        best = exported.argmax(axis=-1)
        greedy.extend(quantized.argmax(axis=-1) == best)
        top5.extend((np.argsort(quantized, axis=-1)[:, -5:] == best[:, None]).any(axis=-1))
    return float(np.mean(greedy)), float(np.mean(top5))


def compare(reference_dir, fp32_dir, int4_dir, tokenizer_dir, base_dir=None):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    prompt_ids = [tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in PROMPTS]
    reference, fp32 = TorchLogits(reference_dir), OnnxLogits(fp32_dir)
    start = far_start(reference.network.config, max(map(len, prompt_ids)))
    past = random_past(reference.network.config, start)
    exported = logits(fp32, prompt_ids)  # the short prompts' fp32 logits, used by every figure below
    figures = {
        "difference": largest_difference(logits(reference, prompt_ids), exported),
        "far_difference": largest_difference(logits(reference, prompt_ids, past), logits(fp32, prompt_ids, past)),
        "far_position": start,
        "greedy": None,
        "top5": None,
    }
    if int4_dir.name != "none":
        figures["greedy"], figures["top5"] = agreement(exported, logits(OnnxLogits(int4_dir), prompt_ids))
    if base_dir is not None:
        del reference
        figures["base_difference"] = largest_difference(logits(TorchLogits(base_dir), prompt_ids), exported)
    return figures


def option(arguments, name):
    """The value of `--name VALUE` taken out of `arguments`, else None."""
    if name not in arguments:
        return None
    at = arguments.index(name)
    value = arguments.pop(at + 1)
    arguments.pop(at)
    return Path(value)


if __name__ == "__main__":
    command, *paths = sys.argv[1:]
    if command == "mutate":
        model_dir, out, mutation = paths
        sys.exit(0 if mutate(Path(model_dir), Path(out), mutation) else 3)
    if command == "export":
        export_fp32(*map(Path, paths))
    else:
        cache, base = option(paths, "--export-fp32"), option(paths, "--base")
        if cache is not None:
            export_fp32(Path(paths[0]), Path(paths[1]), cache)
        print(json.dumps(compare(*map(Path, paths), base_dir=base)))
