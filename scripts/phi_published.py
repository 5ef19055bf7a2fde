"""The published shapes of the Phi models the interview offers, in one place, with where each came from.

There is no model hub here, so nothing is downloaded: these are the values of each model's `config.json` on
the Hugging Face hub, key for key as a hub download has them (`rope_scaling` with `type`, `short_factor` and
`long_factor`, `original_max_position_embeddings` at the top level: the hub's names, not transformers 5's
`rope_parameters`). `scripts/phi_shapes.py` writes a random-weight model of any of them, cut to fewer layers.

Where the values come from (copies of the hub files vendored in public repositories):
- Phi-3-mini-4k, Phi-3-mini-128k, Phi-3.5-mini: sdpython/onnx-diagnostic,
  commit cc937c25e830a1195f73090ada9ea6bd8f670a57,
  `onnx_diagnostic/torch_models/hghub/hub_data_cached_configs.py` (its cache of the hub configs:
  `_ccached_microsoft_phi3_mini_4k_instruct`, `_ccached_microsoft_phi3_mini_128k_instruct`,
  `_ccached_microsoft_phi_35_mini_instruct`); Phi-3.5-mini's again, the same numbers, in the same repository's
  `onnx_diagnostic/torch_models/llms.py` (`get_phi_35_mini_instruct`).
- Phi-4-mini-instruct: the architecture, `long_factor` and token ids as in the same file's
  `_ccached_microsoft_phi4_reasoning` (Phi-4-mini-reasoning, the same network); `short_factor` (48 x 1.0),
  `_name_or_path`, `auto_map` and `transformers_version` from two further copies of the instruct model's
  `config.json` in the code index (a dump of hub configs and an MLX conversion's test fixture, which agree
  on every value here; the index does not name their repositories).
- Phi-3's special tokens and ids: pytorch/torchtune, commit bd2a0fc7c31430972728494fa01aaeeb0ebf1ba1,
  `torchtune/models/phi3/_tokenizer.py` (`PHI3_SPECIAL_TOKENS`). Phi-4-mini's: two test fixtures in the code
  index that agree (`<|endoftext|>` 199999, `<|assistant|>` 200019, `<|end|>` 200020, `<|user|>` 200021,
  `<|system|>` 200022).
"""

# fmt: off
PUBLISHED_CONFIGS = {
    "microsoft/Phi-3-mini-4k-instruct": {
        "_name_or_path": "Phi-3-mini-4k-instruct",
        "architectures": ["Phi3ForCausalLM"],
        "attention_dropout": 0.0,
        "auto_map": {
            "AutoConfig": "configuration_phi3.Phi3Config",
            "AutoModelForCausalLM": "modeling_phi3.Phi3ForCausalLM",
        },
        "bos_token_id": 1,
        "embd_pdrop": 0.0,
        "eos_token_id": 32000,
        "hidden_act": "silu",
        "hidden_size": 3072,
        "initializer_range": 0.02,
        "intermediate_size": 8192,
        "max_position_embeddings": 4096,
        "model_type": "phi3",
        "num_attention_heads": 32,
        "num_hidden_layers": 32,
        "num_key_value_heads": 32,
        "original_max_position_embeddings": 4096,
        "pad_token_id": 32000,
        "resid_pdrop": 0.0,
        "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0,
        "sliding_window": 2047,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.40.2",
        "use_cache": True,
        "attention_bias": False,
        "vocab_size": 32064,
        "rope_scaling": None,
    },
    "microsoft/Phi-3-mini-128k-instruct": {
        "_name_or_path": "Phi-3-mini-128k-instruct",
        "architectures": ["Phi3ForCausalLM"],
        "attention_dropout": 0.0,
        "auto_map": {
            "AutoConfig": "configuration_phi3.Phi3Config",
            "AutoModelForCausalLM": "modeling_phi3.Phi3ForCausalLM",
        },
        "bos_token_id": 1,
        "embd_pdrop": 0.0,
        "eos_token_id": 32000,
        "hidden_act": "silu",
        "hidden_size": 3072,
        "initializer_range": 0.02,
        "intermediate_size": 8192,
        "max_position_embeddings": 131072,
        "model_type": "phi3",
        "num_attention_heads": 32,
        "num_hidden_layers": 32,
        "num_key_value_heads": 32,
        "original_max_position_embeddings": 4096,
        "pad_token_id": 32000,
        "resid_pdrop": 0.0,
        "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0,
        "sliding_window": 262144,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.40.2",
        "use_cache": True,
        "attention_bias": False,
        "vocab_size": 32064,
        "rope_scaling": {
            "type": "longrope",
            "long_factor": [
                1.0700000524520874, 1.1200000047683716, 1.149999976158142, 1.4199999570846558, 1.5699999332427979,
                1.7999999523162842, 2.129999876022339, 2.129999876022339, 3.009999990463257, 5.910000324249268,
                6.950000286102295, 9.070000648498535, 9.930000305175781, 10.710000038146973, 11.130000114440918,
                14.609999656677246, 15.409998893737793, 19.809999465942383, 37.279998779296875, 38.279998779296875,
                38.599998474121094, 40.12000274658203, 46.20000457763672, 50.940006256103516, 53.66000747680664,
                54.9373893737793, 56.89738845825195, 57.28738784790039, 59.98738479614258, 60.86738586425781,
                60.887386322021484, 61.71739196777344, 62.91739273071289, 62.957393646240234, 63.41739273071289,
                63.8173942565918, 63.83739471435547, 63.897396087646484, 63.93739700317383, 64.06739807128906,
                64.11434936523438, 64.12435150146484, 64.15435028076172, 64.19435119628906, 64.24435424804688,
                64.57435607910156, 64.69000244140625, 64.76000213623047,
            ],
            "short_factor": [
                1.1, 1.1, 1.1, 1.3000000000000003, 1.3500000000000003,
                1.3500000000000003, 1.4000000000000004, 1.5500000000000005, 2.000000000000001, 2.000000000000001,
                2.000000000000001, 2.000000000000001, 2.000000000000001, 2.000000000000001, 2.000000000000001,
                2.000000000000001, 2.000000000000001, 2.000000000000001, 2.000000000000001, 2.000000000000001,
                2.000000000000001, 2.000000000000001, 2.000000000000001, 2.000000000000001, 2.000000000000001,
                2.0500000000000007, 2.0500000000000007, 2.0500000000000007, 2.0500000000000007, 2.0500000000000007,
                2.0500000000000007, 2.1000000000000005, 2.1000000000000005, 2.1500000000000004, 2.25,
                2.25, 2.25, 2.25, 2.25, 2.3999999999999995,
                2.4499999999999993, 2.499999999999999, 2.6999999999999984, 2.6999999999999984, 2.7499999999999982,
                2.799999999999998, 2.8999999999999977, 3.049999999999997,
            ],
        },
    },
    "microsoft/Phi-3.5-mini-instruct": {
        "_name_or_path": "Phi-3.5-mini-instruct",
        "architectures": ["Phi3ForCausalLM"],
        "attention_dropout": 0.0,
        "auto_map": {
            "AutoConfig": "configuration_phi3.Phi3Config",
            "AutoModelForCausalLM": "modeling_phi3.Phi3ForCausalLM",
        },
        "bos_token_id": 1,
        "embd_pdrop": 0.0,
        "eos_token_id": 32000,
        "hidden_act": "silu",
        "hidden_size": 3072,
        "initializer_range": 0.02,
        "intermediate_size": 8192,
        "max_position_embeddings": 131072,
        "model_type": "phi3",
        "num_attention_heads": 32,
        "num_hidden_layers": 32,
        "num_key_value_heads": 32,
        "original_max_position_embeddings": 4096,
        "pad_token_id": 32000,
        "resid_pdrop": 0.0,
        "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0,
        "sliding_window": 262144,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.43.3",
        "use_cache": True,
        "attention_bias": False,
        "vocab_size": 32064,
        "rope_scaling": {
            "type": "longrope",
            "long_factor": [
                1.0800000429153442, 1.1100000143051147, 1.1399999856948853, 1.340000033378601, 1.5899999141693115,
                1.600000023841858, 1.6200000047683716, 2.620000123977661, 3.2300000190734863, 3.2300000190734863,
                4.789999961853027, 7.400000095367432, 7.700000286102295, 9.09000015258789, 12.199999809265137,
                17.670000076293945, 24.46000099182129, 28.57000160217285, 30.420001983642578, 30.840002059936523,
                32.590003967285156, 32.93000411987305, 42.320003509521484, 44.96000289916992, 50.340003967285156,
                50.45000457763672, 57.55000305175781, 57.93000411987305, 58.21000289916992, 60.1400032043457,
                62.61000442504883, 62.62000274658203, 62.71000289916992, 63.1400032043457, 63.1400032043457,
                63.77000427246094, 63.93000411987305, 63.96000289916992, 63.970001220703125, 64.02999877929688,
                64.06999969482422, 64.08000183105469, 64.12000274658203, 64.41000366210938, 64.4800033569336,
                64.51000213623047, 64.52999877929688, 64.83999633789062,
            ],
            "short_factor": [
                1.0, 1.0199999809265137, 1.0299999713897705, 1.0299999713897705, 1.0499999523162842,
                1.0499999523162842, 1.0499999523162842, 1.0499999523162842, 1.0499999523162842, 1.0699999332427979,
                1.0999999046325684, 1.1099998950958252, 1.1599998474121094, 1.1599998474121094, 1.1699998378753662,
                1.2899998426437378, 1.339999794960022, 1.679999828338623, 1.7899998426437378, 1.8199998140335083,
                1.8499997854232788, 1.8799997568130493, 1.9099997282028198, 1.9399996995925903, 1.9899996519088745,
                2.0199997425079346, 2.0199997425079346, 2.0199997425079346, 2.0199997425079346, 2.0199997425079346,
                2.0199997425079346, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914,
                2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914, 2.0299997329711914,
                2.0799996852874756, 2.0899996757507324, 2.189999580383301, 2.2199995517730713, 2.5899994373321533,
                2.729999542236328, 2.749999523162842, 2.8399994373321533,
            ],
        },
    },
    "microsoft/Phi-4-mini-instruct": {
        "_name_or_path": "Phi-4-mini-instruct",
        "architectures": ["Phi3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "auto_map": {
            "AutoConfig": "configuration_phi3.Phi3Config",
            "AutoModelForCausalLM": "modeling_phi3.Phi3ForCausalLM",
            "AutoTokenizer": "Xenova/gpt-4o",
        },
        "bos_token_id": 199999,
        "embd_pdrop": 0.0,
        "eos_token_id": 199999,
        "full_attn_mod": 1,
        "hidden_act": "silu",
        "hidden_size": 3072,
        "initializer_range": 0.02,
        "intermediate_size": 8192,
        "interpolate_factor": 1,
        "lm_head_bias": False,
        "max_position_embeddings": 131072,
        "mlp_bias": False,
        "model_type": "phi3",
        "num_attention_heads": 24,
        "num_hidden_layers": 32,
        "num_key_value_heads": 8,
        "original_max_position_embeddings": 4096,
        "pad_token_id": 199999,
        "partial_rotary_factor": 0.75,
        "resid_pdrop": 0.0,
        "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0,
        "sliding_window": 262144,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.45.0",
        "use_cache": True,
        "vocab_size": 200064,
        "rope_scaling": {
            "type": "longrope",
            "long_factor": [
                1, 1.118320672, 1.250641126, 1.398617824, 1.564103225,
                1.74916897, 1.956131817, 2.187582649, 2.446418898, 2.735880826,
                3.059592084, 3.421605075, 3.826451687, 4.279200023, 4.785517845,
                5.351743533, 5.984965424, 6.693110555, 7.485043894, 8.370679318,
                9.36110372, 10.4687158, 11.70738129, 13.09260651, 14.64173252,
                16.37415215, 18.31155283, 20.47818807, 22.90118105, 25.61086418,
                28.64115884, 32.03, 32.1, 32.13, 32.23,
                32.6, 32.61, 32.64, 32.66, 32.7,
                32.71, 32.93, 32.97, 33.28, 33.49,
                33.5, 44.16, 47.77,
            ],
            "short_factor": [
                1.0, 1.0, 1.0, 1.0, 1.0,
                1.0, 1.0, 1.0, 1.0, 1.0,
                1.0, 1.0, 1.0, 1.0, 1.0,
                1.0, 1.0, 1.0, 1.0, 1.0,
                1.0, 1.0, 1.0, 1.0, 1.0,
                1.0, 1.0, 1.0, 1.0, 1.0,
                1.0, 1.0, 1.0, 1.0, 1.0,
                1.0, 1.0, 1.0, 1.0, 1.0,
                1.0, 1.0, 1.0, 1.0, 1.0,
                1.0, 1.0, 1.0,
            ],
        },
    },
}
# fmt: on

# The chat markers each family's tokenizer has, at their published ids, and the turn layout of its chat
# template (Phi-3: a newline after each marker; Phi-4-mini: none). The tokenizer itself is borrowed
# (scripts/phi_shapes.py): only these ids and markers are the real ones.
PHI3_SPECIAL_TOKENS = {
    "<|endoftext|>": 32000, "<|assistant|>": 32001, "<|placeholder1|>": 32002, "<|placeholder2|>": 32003,
    "<|placeholder3|>": 32004, "<|placeholder4|>": 32005, "<|system|>": 32006, "<|end|>": 32007,
    "<|placeholder5|>": 32008, "<|placeholder6|>": 32009, "<|user|>": 32010,
}  # fmt: skip
PHI4_MINI_SPECIAL_TOKENS = {
    "<|endoftext|>": 199999, "<|assistant|>": 200019, "<|end|>": 200020, "<|user|>": 200021, "<|system|>": 200022,
}  # fmt: skip
PHI3_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}"
)
PHI4_MINI_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}"
)
# Phi-3 keeps Llama's first three ids (its tokenizer is Llama 2's SentencePiece one)
PHI3_LLAMA_TOKENS = {"<unk>": 0, "<s>": 1, "</s>": 2}


def chat_tokens(model):
    """(special tokens with their ids, chat template) of a model of PUBLISHED_CONFIGS."""
    if PUBLISHED_CONFIGS[model]["vocab_size"] == 200064:
        return PHI4_MINI_SPECIAL_TOKENS, PHI4_MINI_CHAT_TEMPLATE
    return {**PHI3_LLAMA_TOKENS, **PHI3_SPECIAL_TOKENS}, PHI3_CHAT_TEMPLATE
