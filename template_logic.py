"""The template's own logic, importable and unit-tested without rendering.

- `resolve(answers)`: the answers as the project uses them: training settings from the chosen
  model's row in `_models` (or the user's overrides), columns from the text template, and
  answer names of older template versions mapped to today's (or refused with what replaced them).
- `check_answers(answers)`: raises AnswerError with one line saying what to change.
- `olive_config(answers)`: the Olive 0.13 workflow, as a Python dict.
- `pip_requirements(runtime, extras)`: the pinned pip list, in install order.
- `unneeded_files(answers)`: what the post-generation hook removes for these answers.

Used by the hooks (imported from the template folder), by the Jinja filters in
local_extensions.py, and by scripts/env.sh.
"""

import importlib.util
import json
import re
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent
# the template's own tables, read from cookiecutter.json: a replayed context may carry an older copy
_CONTEXT = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))
TARGET_MODULES, STACK = _CONTEXT["_target_modules"], _CONTEXT["_stack"]
# A model row's `training` is its settings, or the name of a table they share (the Phi rows: "_phi_training")
MODELS = {
    name: {**row, "training": _CONTEXT[row["training"]] if isinstance(row["training"], str) else row["training"]}
    for name, row in _CONTEXT["_models"].items()
}

# the default names Phi-3: a project left at it is titled after the model it fine-tunes (project_title)
DEFAULT_PROJECT_NAME = _CONTEXT["project_name"]
SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_ -]*$")

# The training settings: the chosen model's row of `_models` unless overridden without a prompt
# (`cookiecutter --no-input ... __learning_rate=0.001`, or `__learning_rate` in a --config-file).
# name -> (type, lowest, highest)
KNOBS = {
    "lora_r": (int, 1, 1024),
    "lora_alpha": (float, 1e-3, 4096),
    "epochs": (float, 0.01, 1000),
    "min_steps": (int, 1, 1_000_000),
    "step_cap": (int, 1, 1_000_000),
    "learning_rate": (float, 1e-8, 1.0),
    "max_seq_len": (int, 16, 131_072),
    "batch_size": (int, 1, 1024),
    # evaluations without a lower validation loss before training ends (0: never; slm/train/early_stopping.py). The
    # model table's 3, from the curves measured with 10 evaluations a run (docs/training.md, "Early stopping"): a
    # noisy review-polarity run was best at its 4th evaluation, worse at the 5th and 6th, best again at the 7th
    # (patience 2 stops at the 6th and misses it); a SQuAD-style run was best at its 2nd, so 3 stops it at the
    # 5th, half its steps, where the AI Toolkit's 5 stops at the 7th and saves 30%
    "early_stopping_patience": (int, 0, 1000),
}
# settings with no default in the model table: empty unless given
OPTIONAL_KNOBS = {
    # a fixed step count, overriding the schedule from the row count (transformers' max_steps)
    "max_steps": (int, 1, 1_000_000),
}

# Answers of earlier template versions. Cookiecutter passes an old name through only from a
# replay file (on the command line it drops names the template no longer has, before any hook
# runs), so these are what a replayed older project can carry.
RENAMED = {name: f"__{name}" for name in (*KNOBS, *OPTIONAL_KNOBS)} | {
    "download_model": "__download_model",
    "olive_telemetry": "__olive_telemetry",
}
MOVED_TO_SUBMIT_TIME = {
    "azure_subscription_id": ".azureml/config.json (subscription_id)",
    "azure_resource_group": ".azureml/config.json (resource_group)",
    "azure_workspace": ".azureml/config.json (workspace_name)",
    "azure_compute": "submit.py --compute (or AZUREML_COMPUTE)",
    "azure_experiment": "submit.py --experiment (or AZUREML_EXPERIMENT)",
    "azure_hf_token_secret": "submit.py --hf-token-secret (or AZUREML_HF_TOKEN_SECRET)",
    "base_model_source": "submit.py --registry-model (or AZUREML_REGISTRY_MODEL)",
    "azureml_registry_name": "submit.py --registry-model (or AZUREML_REGISTRY_MODEL)",
    "azureml_registry_model": "submit.py --registry-model (or AZUREML_REGISTRY_MODEL)",
    "azureml_registry_version": "submit.py --registry-model (or AZUREML_REGISTRY_MODEL)",
}

# The `device` answer: (where training runs, where the exported model runs). Olive 0.13 splits a run the same way:
# its `host` system runs the passes, its `target` system is where the model will run (olive_systems). The training
# settings follow the first (torch dtype, QLoRA compute dtype, gradient checkpointing), the export the second
# (ModelBuilder's execution provider, the int4 recipes and their search, the fp32 reference the search scores
# against, the onnxruntime packages, the device infer.py, benchmark.py and serve.py default to).
DEVICES = {
    "cpu": ("cpu", "cpu"),
    "cuda": ("cuda", "cuda"),
    # fine-tune on an NVIDIA GPU (this machine or the Azure ML job), deploy the int4 model to CPUs (laptops, edge)
    "cuda-train-cpu-run": ("cuda", "cpu"),
}

# Measured with Olive 0.13.0: ModelBuilder prunes fp16 on the CPU execution provider
# ("FP16 is not supported on CPU") and `olive run` then exits 0 with no model. Keyed by where the model runs.
UNSUPPORTED = {
    ("cpu", "fp16"): "precision=fp16 needs device=cuda (Olive's ModelBuilder has no fp16 on CPU); use int4 or fp32",
}

SAMPLE_COLUMNS = ("phrase", "tone")
# (training, validation, held-out eval) files of each data format
DATA_FILES = {
    "columns": ("datasets/train.json", "datasets/validation.json", "datasets/eval.json"),
    "messages": ("datasets/train.jsonl", "datasets/validation.jsonl", "datasets/eval.jsonl"),
}
CHECKPOINT_DIR = "gen-model/checkpoints"
# evaluate on the validation rows and save a checkpoint every tenth of the steps (transformers reads
# a value below 1 as that fraction of the total), so a run of any length is judged ten times
EVAL_FRACTION = 0.1
LOG_FRACTION = 0.02
AZUREML_FILES = ("fine-tuning/azureml", ".azureml", ".amlignore", "slm/train/azureml.py")
PRE_PROCESS_SCRIPT = "slm/train/olive_data.py"
PRE_PROCESS_TYPE = "answer_only_pre_process"


class AnswerError(Exception):
    """An answer the template cannot use; the message says what to change."""


def _project_module(relative):
    """A dependency-free module of the generated project, the one definition of what it holds."""
    path = TEMPLATE_DIR / "{{cookiecutter.project_slug}}" / relative
    spec = importlib.util.spec_from_file_location("project_" + path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PROMPTS = _project_module("slm/prompts.py")  # the training text
SEARCH_METRICS = _project_module("slm/export/search_metrics.py")  # the export search's evaluator and metrics


def template_fields(template):
    try:
        return PROMPTS.template_fields(template)
    except ValueError as error:
        raise AnswerError(f"text_template is not a valid template ({error}); write {{column}} placeholders") from None


def _number(name, raw):
    kind, lowest, highest = (KNOBS | OPTIONAL_KNOBS)[name]
    text = str(raw).strip()
    try:
        value = kind(text)
    except ValueError:
        raise AnswerError(f"{name}={text!r} is not a{'n integer' if kind is int else ' number'}") from None
    if not lowest <= value <= highest:
        raise AnswerError(f"{name}={text} is out of range; use a value from {lowest:g} to {highest:g}")
    return value


def project_title(answers):
    """The README's title: the project name, or, left at the default (which names Phi-3), the chosen model's."""
    if answers["project_name"] != DEFAULT_PROJECT_NAME:
        return answers["project_name"]
    return f"{answers['base_model'].split('/')[-1]} Tone Classifier"


def plain_number(value):
    """A setting as a person writes it: 32.0 as 32 (an integral float), anything else unchanged."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def resolve(answers):
    """The answers the project is built from: old names mapped, settings typed, columns derived.

    Raises AnswerError for an answer that cannot be used.
    """
    answers = dict(answers)
    moved = sorted(name for name in MOVED_TO_SUBMIT_TIME if name in answers)
    if moved:
        raise AnswerError(
            f"{moved[0]} is no longer asked when the project is generated: it is read at submit time from "
            f"{MOVED_TO_SUBMIT_TIME[moved[0]]}; drop it from your replay or config file"
        )
    for old, new in RENAMED.items():
        if old in answers:  # a replay file of an older version: its answer wins over today's default
            answers[new] = answers.pop(old)
    # the question shows newlines as \n so that the default fits on one line
    answers["text_template"] = answers["text_template"].replace("\\n", "\n")
    fields = (template_fields(answers["text_template"]) if answers["data_format"] == "columns" else []) or [None]
    input_column, output_column = fields[0], fields[-1]
    for name, derived in (("input_column", input_column), ("output_column", output_column)):
        given = answers.pop(name, None)  # only replay files of older versions carry these
        if given is not None and derived is not None and given != derived:
            raise AnswerError(
                f"{name}={given!r} is now taken from text_template (which names {derived!r}); "
                f"write {{{given}}} in text_template instead"
            )
    if answers["base_model"] not in MODELS:
        raise AnswerError(f"base_model {answers['base_model']!r} is not one of {sorted(MODELS)}")
    if answers["device"] not in DEVICES:
        raise AnswerError(f"device {answers['device']!r} is not one of {list(DEVICES)}")
    training_device, target_device = DEVICES[answers["device"]]
    resolved = {
        **answers,
        "model": MODELS[answers["base_model"]],
        "python_version": STACK["python"],
        "input_column": input_column,
        "output_column": output_column,
        "local_model_path": answers["local_model_path"].strip(),
        "title": project_title(answers),
        "data_files": DATA_FILES[answers["data_format"]],
        "training_device": training_device,
        "target_device": target_device,
        # empty: the same as install_dependencies
        "download_model": answers.get("__download_model") or answers["install_dependencies"],
    }
    if resolved.get("__olive_telemetry", "no") not in ("yes", "no"):
        raise AnswerError(f"__olive_telemetry={resolved['__olive_telemetry']!r}: answer yes or no")
    resolved["olive_telemetry"] = resolved.get("__olive_telemetry", "no")
    resolved["export_search"] = str(resolved.get("__export_search", "yes")).strip() or "yes"
    if resolved["export_search"] not in ("yes", "no"):
        raise AnswerError(f"__export_search={resolved['export_search']!r}: answer yes or no")
    resolved.setdefault("export", "merged")  # replay files of older versions have no export answer
    defaults = resolved["model"]["training"]
    for name in KNOBS:
        given = str(answers.get(f"__{name}", "")).strip()
        resolved[name] = _number(name, given or defaults[name])
    for name in OPTIONAL_KNOBS:
        given = str(answers.get(f"__{name}", "")).strip()
        resolved[name] = _number(name, given) if given else None
    if resolved["min_steps"] > resolved["step_cap"]:
        raise AnswerError(f"min_steps={resolved['min_steps']} is above step_cap={resolved['step_cap']}; lower it")
    return resolved


def check_slug(answers):
    if not SLUG.match(answers["project_slug"]):
        raise AnswerError(
            f"project_slug {answers['project_slug']!r} must start with a lowercase letter or digit and contain "
            "only lowercase letters, digits, '.', '_' or '-'"
        )


def check_columns_and_template(answers):
    if answers["data_format"] != "columns":
        return
    fields = template_fields(answers["text_template"])
    if len(set(fields)) < 2 or None in (answers["input_column"], answers["output_column"]):
        raise AnswerError(
            "text_template must contain two placeholders: {input column} first, {output column} last, "
            "e.g. ### Text: {phrase}\\n### The tone is:\\n{tone}"
        )
    input_column, output_column = answers["input_column"], answers["output_column"]
    if input_column == output_column:
        raise AnswerError(
            f"text_template starts and ends with {{{input_column}}}: put the input column first and the answer "
            "column last, once each"
        )
    for column in (input_column, output_column):
        if not COLUMN.match(column):
            raise AnswerError(
                f"text_template placeholder {{{column}}} must be a column name: letters, digits, '_', ' ', '-'"
            )
    extra = sorted(set(fields) - {input_column, output_column})
    if extra:
        raise AnswerError(f"text_template uses {extra}; only {{{input_column}}} and {{{output_column}}} are allowed")
    if fields.count(output_column) != 1:
        raise AnswerError(
            f"text_template must end with the answer: {{{output_column}}} exactly once, after {{{input_column}}}"
        )


def check_local_model(answers):
    local = answers["local_model_path"]
    if not local:
        return
    path = Path(local)
    if not path.is_absolute():
        raise AnswerError(f"local_model_path {local!r} must be an absolute path")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise AnswerError(f"local_model_path {local!r} has no config.json; point it at a Hugging Face model folder")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if answers["export"] == "adapter" and not isinstance(config.get("num_hidden_layers"), int):
        raise AnswerError(
            f"local_model_path {local!r}: config.json has no num_hidden_layers, which export=adapter needs "
            "(to keep each layer's LoRA weights out of int4); use a complete Hugging Face config.json"
        )
    architectures = config.get("architectures") or ["?"]
    expected = answers["model"]["architecture"]
    if architectures[0] != expected:
        same_family = [name for name, model in MODELS.items() if model["architecture"] == architectures[0]]
        hint = f"choose base_model {same_family[0]}" if same_family else "use a Phi-3 or Llama-architecture model"
        raise AnswerError(
            f"local_model_path is a {architectures[0]} model but base_model {answers['base_model']} is "
            f"{expected}; {hint}"
        )


def check_azureml(answers):
    if answers["compute"] != "azureml":
        return
    if answers["training_device"] != "cuda":
        gpu_answers = " or ".join(name for name, (training, _) in DEVICES.items() if training == "cuda")
        raise AnswerError(f"compute=azureml runs on a GPU cluster: answer device={gpu_answers}")
    if answers["local_model_path"]:
        raise AnswerError("local_model_path is on this machine, not on the cluster: leave it empty for compute=azureml")


def check_combination(answers):
    reason = UNSUPPORTED.get((answers["target_device"], answers["precision"]))
    if reason:
        raise AnswerError(reason)


CHECKS = (check_slug, check_columns_and_template, check_azureml, check_local_model, check_combination)


def check_answers(answers):
    """Resolve and check the answers; raise AnswerError on the first problem."""
    resolved = resolve(answers)
    for check in CHECKS:
        check(resolved)
    return resolved


def model_dir(answers):
    return answers["local_model_path"] or "model-cache/" + answers["base_model"].split("/")[-1]


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


# The Phi rows also try plain int4 in blocks of 128: on the full-size Phi-3-mini it reads 15% fewer bytes a token
# and its first token comes 30% sooner than in blocks of 32 (docs/measurements.md, "int4 decode at full size
# against llama.cpp"); whether it stays within a point of the fine-tune is the search's to measure, on the rows.
PHI_INT4_ALSO = ({"int4_algo_config": "default", "int4_block_size": 128},)


def cpu_int4_recipes(answers):
    also = PHI_INT4_ALSO if answers["model"]["architecture"] == "Phi3ForCausalLM" else ()
    return ({"int4_algo_config": answers["model"]["int4_recipe"]}, *CPU_INT4_ALSO, *also)


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


def layer_count(answers):
    """The base model's layer count: from a local model's config.json, else the model table."""
    if answers["local_model_path"]:
        config = json.loads((Path(answers["local_model_path"]) / "config.json").read_text(encoding="utf-8"))
        return config["num_hidden_layers"]
    return answers["model"]["layers"]


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
    architecture = answers["model"]["architecture"]
    on_gpu = answers["training_device"] == "cuda"  # the training settings; the export's follow target_device
    messages = answers["data_format"] == "messages"
    training_args = {
        # one pass over the scheduled rows, in the order the pre-processing laid them (slm/train/schedule.py)
        "num_train_epochs": 1,
        "train_sampling_strategy": "sequential",
        "learning_rate": answers["learning_rate"],
        "per_device_train_batch_size": answers["batch_size"],
        "gradient_accumulation_steps": 1,
        # on CPU too for the 3.8 B Phi rows: without it one LoRA step of the full-size Phi-3-mini passed 23 GB
        # here, with it 21.7 GB (docs/measurements.md, "Full size"); SmolLM2 fits either way and runs faster without
        "gradient_checkpointing": on_gpu or architecture == "Phi3ForCausalLM",
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
        "target_modules": TARGET_MODULES[architecture],
        "r": answers["lora_r"],
        "alpha": answers["lora_alpha"],
        "lora_dropout": 0.05,
        # bfloat16 on CPU too for the Phi rows (their weights ship in bfloat16): the LoRA stage of a 4-layer Phi-3-mini
        # shape inside olive run peaked at 2.2 GiB instead of 3.5 and stepped twice as fast on this AVX-512/AMX CPU
        # (docs/measurements.md, "olive run at full size"); SmolLM2 keeps float32 and its weights byte for byte
        "torch_dtype": "bfloat16" if on_gpu or architecture == "Phi3ForCausalLM" else "float32",
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


def pip_requirements(runtime, extras=()):
    """The pinned pip packages, in install order (torch first). runtime: the onnxruntime group ("cpu" or "cuda"),
    that of the device the model runs on; extras: names of further `_stack` groups."""
    return [STACK["torch"], *STACK["common"], *STACK[runtime], *(pin for extra in extras for pin in STACK[extra])]


def project_runtime(answers):
    """The onnxruntime packages a project installs: those of where its model runs. A GPU-trained model deployed to
    CPU needs no CUDA runtime: its training is torch's (PyPI's Linux wheel carries CUDA) and bitsandbytes', both in
    the common set, and the export search scores the int4 candidates on the CPU runtime (onnxruntime-gpu and
    onnxruntime cannot share an environment)."""
    return resolve(answers)["target_device"]


def project_extras(answers):
    """The `_stack` groups a project installs beyond the common set."""
    return [*(["azureml"] if answers["compute"] == "azureml" else []), "tools"]


def unneeded_files(answers):
    """Files and folders of the rendered template that these (resolved) answers do not use."""
    unneeded = []
    if answers["local_model_path"]:
        unneeded.append("model-cache")  # the project trains from the user's own folder
    if answers["compute"] != "azureml":
        unneeded += AZUREML_FILES
    for data_format, files in DATA_FILES.items():
        if data_format != answers["data_format"]:
            unneeded += files
    return unneeded
