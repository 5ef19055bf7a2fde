"""The Olive 0.13 workflow built as data from the resolved answers: `olive_config(answers)`, which the
`olive_config` Jinja filter writes to fine-tuning/olive-config.json."""

from template_logic.answers import layer_count, model_dir, resolve
from template_logic.tables import DATA_FILES, SEARCH_METRICS, TARGET_MODULES

CHECKPOINT_DIR = "gen-model/checkpoints"
# evaluate on the validation rows and save a checkpoint every tenth of the steps (transformers reads a value below 1
# as that fraction of the total), so a run of any length is judged ten times. Every twentieth, early stopping ended
# runs sooner but kept steps of near-equal validation loss and lower accuracy (debates-party: 0.587 against 0.671;
# docs/training.md, "Early stopping")
EVAL_FRACTION = 0.1
LOG_FRACTION = 0.02
PRE_PROCESS_SCRIPT = "slm/train/olive_data.py"
PRE_PROCESS_TYPE = "answer_only_pre_process"
# Training on a GPU, whatever the model. On CPU each model row's `cpu_training` says: the Phi rows (`_phi`) train in
# bfloat16 (their weights ship in it: the LoRA stage of a 4-layer Phi-3-mini shape inside olive run peaked at
# 2.2 GiB instead of 3.5 and stepped twice as fast on an AVX-512/AMX CPU) with gradient checkpointing (without it
# one LoRA step of the full-size Phi-3-mini passed 23 GB here): docs/measurements.md, "olive run at full size" and
# "Full size". SmolLM2 keeps float32, its weights byte for byte, and runs faster without checkpointing.
GPU_TRAINING = {"torch_dtype": "bfloat16", "gradient_checkpointing": True}

# ModelBuilder's int4 settings on CPU, measured on SmolLM2 (docs/measurements.md, "int4 settings on CPU"):
# which recipe loses least against fp32 changes from one fine-tune to the next by 3-6 rows of 80, so
# `olive run` tries these on the project's own validation rows and keeps the fastest within a point of
# the fine-tune in fp32 (slm/export/olive_eval.py, "The export search" in docs/measurements.md). Blocks of 64 or
# 128 decode faster but drifted further; accuracy level 1 is slower.
CPU_INT4 = {"int4_block_size": 32, "int4_is_symmetric": True, "int4_accuracy_level": 4}
# The first recipe is the model table's `int4_recipe`, the one built alone when the search is off:
# - k_quant_mixed (SmolLM2): llama.cpp's Q4_K_M recipe, lm_head and the most sensitive layers' v/down
#   projections in int8; the most accurate over three fine-tunes of the sample;
# - rtn_last (the Phi rows): round-to-nearest with lm_head in int8. k_quant_mixed runs onnxruntime's numpy
#   k-quant: 142 s for one layer of the Phi-3 shape here, and over 20 GB for Phi-4-mini's 200,064 x 3,072
#   lm_head ("int4 on the real shapes" in docs/measurements.md).
# Then plain int4, symmetric and asymmetric, fast to build. Also measured and left out: k_quant_last (lm_head
# alone in int8) took a minute to build on SmolLM2, the others 10-50 s, and was never better on held-out rows.
CPU_INT4_ALSO = ({"int4_algo_config": "default"}, {"int4_algo_config": "default", "int4_is_symmetric": False})


def cpu_int4_recipes(answers):
    """The int4 recipes for CPU: the model row's `int4_recipe`, the plain ones every model tries, then the row's
    own `int4_also`. The Phi rows' (`_phi` in cookiecutter.json) is plain int4 in blocks of 128: on the full-size
    Phi-3-mini it reads 15% fewer bytes a token and its first token comes 30% sooner than in blocks of 32
    (docs/measurements.md, "int4 decode at full size against llama.cpp"); whether it stays within a point of the
    fine-tune is the search's to measure, on the project's rows."""
    model = answers["model"]
    return ({"int4_algo_config": model["int4_recipe"]}, *CPU_INT4_ALSO, *model["int4_also"])


# Every recipe sets each setting Olive can search (check_config.py refuses one that does not): with
# `include_pass_params` off, Olive 0.13 still searches an unset one and fails ("Search point is not in the
# search space").

# The export search: Olive's search over the builder recipes, each scored by the project's evaluator
EXPORT_SEARCH = {"execution_order": "joint", "sampler": "sequential", "include_pass_params": False}


def export_evaluator():
    return {
        "type": SEARCH_METRICS.EVALUATOR_TYPE,
        "user_script": "slm/export/olive_eval.py",
        "metrics": [
            {
                "name": SEARCH_METRICS.METRIC,
                "type": "custom",
                "sub_types": [
                    {"name": name, "priority": priority, "higher_is_better": higher}
                    for name, priority, higher in SEARCH_METRICS.SUB_METRICS
                ],
            }
        ],
    }


# The names ModelBuilder gives the two MatMuls of a LoRA layer when it builds a model with its
# adapter (Phi-3's fused qkv_proj / gate_up_proj are unpacked into these projections first).
LORA_PROJECTIONS = {"attn": ("q_proj", "k_proj", "v_proj", "o_proj"), "mlp": ("gate_proj", "up_proj", "down_proj")}


def lora_matmul_names(layers):
    return [
        f"/model/layers.{layer}/{block}/{projection}/lora_{part}/MatMul"
        for layer in range(layers)
        for block, projections in LORA_PROJECTIONS.items()
        for projection in projections
        for part in "AB"
    ]


def searches_export(answers):
    """True when `olive run` chooses the int4 recipe by measurement (CPU int4, unless __export_search=no)."""
    return (answers["target_device"], answers["precision"]) == ("cpu", "int4") and answers["export_search"] == "yes"


def model_builder_settings(answers):
    """ModelBuilder's settings: one dict, or the list of recipes the export search tries (the first alone
    when the search is off)."""
    settings = {"precision": answers["precision"]}
    if answers["export"] == "adapter" and answers["precision"] == "int4":
        # The LoRA MatMuls stay fp32, so ExtractAdapters moves them into the adapter file as they are.
        # Measured on SmolLM2 (README, "Adapters"): int4 LoRA weights decode far slower, and
        # k_quant_mixed cannot quantize them at all (lora_B's input dimension, the rank, is below
        # the block size).
        settings["int4_nodes_to_exclude"] = lora_matmul_names(layer_count(answers))
    if (answers["target_device"], answers["precision"]) != ("cpu", "int4"):
        return settings
    recipes = [settings | CPU_INT4 | recipe for recipe in cpu_int4_recipes(answers)]
    return recipes if searches_export(answers) else recipes[0]


def builder_loading_settings():
    """How ModelBuilder reads the model: with transformers' own classes, as the LoRA pass trained it. Its
    default trusts remote code, and a hub Phi config.json names remote code (`auto_map`: the hub's
    configuration_phi3.py) that Olive's merged model folder does not carry: the build then failed on every
    real-shape Phi (issue 24). Every model of the table is native to transformers 5."""
    return {"extra_options": {"hf_remote": False}}


# Olive's accelerator and execution provider for each device
ACCELERATORS = {"cpu": ("cpu", "CPUExecutionProvider"), "cuda": ("gpu", "CUDAExecutionProvider")}


def olive_systems(answers):
    """Olive's `systems`, `host` and `target`: one local system where training and the model share a device, else
    one system for each, named by its accelerator (local_gpu the host, local_cpu the target). In Olive 0.13 every
    pass is configured for the target's accelerator (ModelBuilder's execution provider comes from it) and the
    evaluator (the export search) runs on the target; the passes run on the host, and the LoRA pass loads the
    model with device_map "auto", onto the GPU wherever torch sees one. The project reads both back
    (slm/project.py: device, training_device)."""
    training, target = answers["training_device"], answers["target_device"]
    names = {
        device: "local_system" if training == target else f"local_{ACCELERATORS[device][0]}"
        for device in (training, target)
    }
    return {
        "systems": {
            name: {
                "type": "LocalSystem",
                "accelerators": [{"device": ACCELERATORS[device][0], "execution_providers": [ACCELERATORS[device][1]]}],
            }
            for device, name in names.items()
        },
        "host": names[training],
        "target": names[target],
    }


def olive_config(raw_answers):
    """The Olive 0.13 workflow for these answers: LoRA/QLoRA, then either MergeAdapterWeights ->
    ModelBuilder (export=merged) or ModelBuilder with the adapter -> ExtractAdapters (export=adapter)."""
    answers = resolve(raw_answers)
    # the training settings follow where it trains (the export's follow target_device): on a GPU bfloat16 and
    # gradient checkpointing, on CPU the model row's `cpu_training`
    on_gpu = answers["training_device"] == "cuda"
    training = GPU_TRAINING if on_gpu else answers["model"]["cpu_training"]
    messages = answers["data_format"] == "messages"
    training_args = {
        # one pass over the scheduled rows, in the order the pre-processing laid them (slm/train/schedule.py)
        "num_train_epochs": 1,
        "train_sampling_strategy": "sequential",
        "learning_rate": answers["learning_rate"],
        "per_device_train_batch_size": answers["batch_size"],
        "gradient_accumulation_steps": 1,
        "gradient_checkpointing": training["gradient_checkpointing"],
        "lr_scheduler_type": "cosine",
        "logging_steps": LOG_FRACTION,
        "eval_strategy": "steps",
        "eval_steps": EVAL_FRACTION,
        "save_strategy": "steps",
        "save_steps": EVAL_FRACTION,
        # the best and the latest checkpoint stay: the best is the model, the latest is where a resume starts
        "save_total_limit": 2,
        "load_best_model_at_end": True,
        "metric_for_best_model": "eval_loss",
        "greater_is_better": False,
        # a resumed run counts the evaluations without improvement from where it stopped, so it stops where an
        # uninterrupted run does (transformers restores the early-stopping callback's count only when asked)
        "restore_callback_states_from_checkpoint": True,
        "output_dir": CHECKPOINT_DIR,
        # info: the Trainer logs its plan, every loss, and which checkpoint it kept
        "log_level": "info",
        "seed": 0,
    }
    if answers["max_steps"]:
        training_args["max_steps"] = answers["max_steps"]
    finetune = {
        "train_data_config": "train_data",
        "eval_data_config": "validation_data",
        "target_modules": TARGET_MODULES[answers["model"]["architecture"]],
        "r": answers["lora_r"],
        "alpha": answers["lora_alpha"],
        "lora_dropout": 0.05,
        "torch_dtype": training["torch_dtype"],
        "training_args": training_args,
    }
    if answers["finetune_method"] == "qlora":
        finetune |= {"quant_type": "nf4", "double_quant": True, "compute_dtype": "bfloat16" if on_gpu else "float32"}
    pre_process = {
        "type": PRE_PROCESS_TYPE,
        # false: the loss covers the whole text, prompt included (Olive's own behaviour)
        "answer_only": True,
        "data_format": answers["data_format"],
        "max_seq_len": answers["max_seq_len"],
    }
    if messages:
        pre_process["message_col"] = "messages"
    else:
        pre_process["text_template"] = answers["text_template"]
    schedule = {
        "epochs": answers["epochs"],
        "min_steps": answers["min_steps"],
        "step_cap": answers["step_cap"],
        "seed": 42,
        "early_stopping_patience": answers["early_stopping_patience"],
    }
    train_file, validation_file, _ = DATA_FILES[answers["data_format"]]

    def data_config(name, data_file, extra=None):
        return {
            "name": name,
            "type": "HuggingfaceContainer",
            "user_script": PRE_PROCESS_SCRIPT,
            "load_dataset_config": {"data_name": "json", "data_files": data_file, "split": "train"},
            "pre_process_data_config": {**pre_process, **(extra or {})},
        }

    passes = {"finetune": {"type": "QLoRA" if answers["finetune_method"] == "qlora" else "LoRA", "config": finetune}}
    builder_settings = model_builder_settings(answers)
    if isinstance(builder_settings, list):
        builder = [
            {"type": "ModelBuilder", "config": settings | builder_loading_settings()} for settings in builder_settings
        ]
    else:
        builder = {"type": "ModelBuilder", "config": builder_settings | builder_loading_settings()}
    if answers["export"] == "adapter":
        # ModelBuilder builds the LoRA layers as their own MatMuls; ExtractAdapters turns their weights
        # into optional inputs (left empty: the base model alone) and writes them to an .onnx_adapter file
        passes |= {"builder": builder, "adapter": {"type": "ExtractAdapters"}}
    else:
        passes |= {"merge": {"type": "MergeAdapterWeights"}, "builder": builder}
    search = {}
    if searches_export(answers):
        search = {
            "evaluators": {SEARCH_METRICS.EVALUATOR_NAME: export_evaluator()},
            "evaluator": SEARCH_METRICS.EVALUATOR_NAME,
            # `"search_strategy": false` builds the first recipe alone (and still scores it)
            "search_strategy": EXPORT_SEARCH,
            # the base model's score is of no use: the candidates are measured against the fine-tune in fp32
            "evaluate_input_model": False,
        }
    return {
        "input_model": {"type": "HfModel", "model_path": model_dir(answers)},
        **olive_systems(answers),
        "data_configs": [
            data_config("train_data", train_file, schedule),
            data_config("validation_data", validation_file),
        ],
        "passes": passes,
        "log_severity_level": 1,
        "cache_dir": "gen-model/olive-cache",
        "output_dir": "gen-model/model",
        **search,
    }
