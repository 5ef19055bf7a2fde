"""The answers: every refusal in one table, and the answers as the project uses them.

- `REFUSALS`: each check the template makes, in the order it makes them. A check reads the answers and returns
  None, or the one line that says what to change.
- `resolve(answers)`: old names mapped, the checks on the answers as given, then the training settings typed from
  the chosen model's row of `_models` (or the user's overrides), the columns derived from the text template, the
  devices split. Raises AnswerError.
- `check_answers(answers)`: `resolve`, then the checks on the resolved answers (the pre-generation hook).
"""

import json
import re
from pathlib import Path

from template_logic.tables import DATA_FILES, DEFAULT_PROJECT_NAME, MODELS, PROMPTS, STACK

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
    # model table's 3 (docs/training.md, "Early stopping"): a noisy review-polarity run was best at its 4th
    # evaluation, worse at the 5th and 6th, best again at the 7th (patience 2 stops at the 6th and misses it)
    "early_stopping_patience": (int, 0, 1000),
}
# settings with no default in the model table: empty unless given
OPTIONAL_KNOBS = {
    # a fixed step count, overriding the schedule from the row count (transformers' max_steps)
    "max_steps": (int, 1, 1_000_000),
}
YES_NO_SETTINGS = {"__olive_telemetry": "no", "__export_search": "yes"}

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
# its `host` system runs the passes, its `target` system is where the model will run (workflow.olive_systems). The
# training settings follow the first (torch dtype, QLoRA compute dtype, gradient checkpointing), the export the
# second (ModelBuilder's execution provider, the int4 recipes and their search, the reference the search scores
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


class AnswerError(Exception):
    """An answer the template cannot use; the message says what to change."""


def template_fields(template):
    """The placeholders of a text template, in order (slm/prompts.py's reading); ValueError if it is not one."""
    return PROMPTS.template_fields(template)


def columns_of(answers):
    """(input column, output column) the text template names: the first and the last placeholder."""
    fields = (template_fields(answers["text_template"]) if answers["data_format"] == "columns" else []) or [None]
    return fields[0], fields[-1]


def yes_no_answer(answers, name):
    """A yes/no setting as given, its default when absent or empty."""
    return str(answers.get(name, YES_NO_SETTINGS[name])).strip() or YES_NO_SETTINGS[name]


def setting_text(answers, name):
    """A training setting as given: the user's `__name` override, else the model row's value ('' for none)."""
    given = str(answers.get(f"__{name}", "")).strip()
    return given or str(MODELS[answers["base_model"]]["training"].get(name, ""))


# The checks. Each reads the answers and returns None or what to change. The first ones read the answers as
# given (old names already mapped), before resolve() derives anything from them; the rest read the resolved ones.


def moved_to_submit_time(answers):
    moved = sorted(name for name in MOVED_TO_SUBMIT_TIME if name in answers)
    if moved:
        return (
            f"{moved[0]} is no longer asked when the project is generated: it is read at submit time from "
            f"{MOVED_TO_SUBMIT_TIME[moved[0]]}; drop it from your replay or config file"
        )


def text_template_parses(answers):
    if answers["data_format"] != "columns":
        return None
    try:
        template_fields(answers["text_template"])
    except ValueError as error:
        return f"text_template is not a valid template ({error}); write {{column}} placeholders"


def old_column_answers_agree(answers):
    """Replay files of older versions name the columns; today the text template does."""
    for name, derived in zip(("input_column", "output_column"), columns_of(answers), strict=True):
        given = answers.get(name)
        if given is not None and derived is not None and given != derived:
            return (
                f"{name}={given!r} is now taken from text_template (which names {derived!r}); "
                f"write {{{given}}} in text_template instead"
            )


def known_base_model(answers):
    if answers["base_model"] not in MODELS:
        return f"base_model {answers['base_model']!r} is not one of {sorted(MODELS)}"


def known_device(answers):
    if answers["device"] not in DEVICES:
        return f"device {answers['device']!r} is not one of {list(DEVICES)}"


def yes_or_no_settings(answers):
    for name in YES_NO_SETTINGS:
        if (value := yes_no_answer(answers, name)) not in ("yes", "no"):
            return f"{name}={value!r}: answer yes or no"


def settings_in_range(answers):
    for name, (kind, lowest, highest) in (KNOBS | OPTIONAL_KNOBS).items():
        text = setting_text(answers, name)
        if not text:
            continue
        try:
            value = kind(text)
        except ValueError:
            return f"{name}={text!r} is not a{'n integer' if kind is int else ' number'}"
        if not lowest <= value <= highest:
            return f"{name}={text} is out of range; use a value from {lowest:g} to {highest:g}"


def steps_in_order(answers):
    if answers["min_steps"] > answers["step_cap"]:
        return f"min_steps={answers['min_steps']} is above step_cap={answers['step_cap']}; lower it"


def slug(answers):
    if not SLUG.match(answers["project_slug"]):
        return (
            f"project_slug {answers['project_slug']!r} must start with a lowercase letter or digit and contain "
            "only lowercase letters, digits, '.', '_' or '-'"
        )


def columns_and_template(answers):
    if answers["data_format"] != "columns":
        return None
    fields = template_fields(answers["text_template"])
    input_column, output_column = answers["input_column"], answers["output_column"]
    if len(set(fields)) < 2 or None in (input_column, output_column):
        return (
            "text_template must contain two placeholders: {input column} first, {output column} last, "
            "e.g. ### Text: {phrase}\\n### The tone is:\\n{tone}"
        )
    if input_column == output_column:
        return (
            f"text_template starts and ends with {{{input_column}}}: put the input column first and the answer "
            "column last, once each"
        )
    for column in (input_column, output_column):
        if not COLUMN.match(column):
            return f"text_template placeholder {{{column}}} must be a column name: letters, digits, '_', ' ', '-'"
    extra = sorted(set(fields) - {input_column, output_column})
    if extra:
        return f"text_template uses {extra}; only {{{input_column}}} and {{{output_column}}} are allowed"
    if fields.count(output_column) != 1:
        return f"text_template must end with the answer: {{{output_column}}} exactly once, after {{{input_column}}}"


def azureml_on_gpu(answers):
    if answers["compute"] != "azureml":
        return None
    if answers["training_device"] != "cuda":
        gpu_answers = " or ".join(name for name, (training, _) in DEVICES.items() if training == "cuda")
        return f"compute=azureml runs on a GPU cluster: answer device={gpu_answers}"
    if answers["local_model_path"]:
        return "local_model_path is on this machine, not on the cluster: leave it empty for compute=azureml"


def local_model(answers):
    local = answers["local_model_path"]
    if not local:
        return None
    path = Path(local)
    if not path.is_absolute():
        return f"local_model_path {local!r} must be an absolute path"
    config_file = path / "config.json"
    if not config_file.is_file():
        return f"local_model_path {local!r} has no config.json; point it at a Hugging Face model folder"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if answers["export"] == "adapter" and not isinstance(config.get("num_hidden_layers"), int):
        return (
            f"local_model_path {local!r}: config.json has no num_hidden_layers, which export=adapter needs "
            "(to keep each layer's LoRA weights out of int4); use a complete Hugging Face config.json"
        )
    architectures = config.get("architectures") or ["?"]
    expected = answers["model"]["architecture"]
    if architectures[0] != expected:
        same_family = [name for name, model in MODELS.items() if model["architecture"] == architectures[0]]
        hint = f"choose base_model {same_family[0]}" if same_family else "use a Phi-3 or Llama-architecture model"
        return (
            f"local_model_path is a {architectures[0]} model but base_model {answers['base_model']} is "
            f"{expected}; {hint}"
        )


def supported_combination(answers):
    return UNSUPPORTED.get((answers["target_device"], answers["precision"]))


# Every refusal, in the order it is checked: (the answers it reads, the check).
REFUSALS = (
    ("given", moved_to_submit_time),
    ("given", text_template_parses),
    ("given", old_column_answers_agree),
    ("given", known_base_model),
    ("given", known_device),
    ("given", yes_or_no_settings),
    ("given", settings_in_range),
    ("resolved", steps_in_order),
    ("resolved", slug),
    ("resolved", columns_and_template),
    ("resolved", azureml_on_gpu),
    ("resolved", local_model),
    ("resolved", supported_combination),
)


def refuse(answers, stage):
    for when, check in REFUSALS:
        if when == stage and (reason := check(answers)):
            raise AnswerError(reason)


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

    Raises AnswerError for an answer that cannot be used as given.
    """
    answers = dict(answers)
    for old, new in RENAMED.items():
        if old in answers:  # a replay file of an older version: its answer wins over today's default
            answers[new] = answers.pop(old)
    # the question shows newlines as \n so that the default fits on one line
    answers["text_template"] = answers["text_template"].replace("\\n", "\n")
    refuse(answers, "given")
    input_column, output_column = columns_of(answers)
    for name in ("input_column", "output_column"):
        answers.pop(name, None)  # only replay files of older versions carry these (old_column_answers_agree)
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
    for name in YES_NO_SETTINGS:
        resolved[name.strip("_")] = yes_no_answer(answers, name)
    resolved.setdefault("export", "merged")  # replay files of older versions have no export answer
    for name, (kind, _, _) in (KNOBS | OPTIONAL_KNOBS).items():
        text = setting_text(answers, name)
        resolved[name] = kind(text) if text else None
    return resolved


def check_answers(answers):
    """Resolve and check the answers; raise AnswerError on the first problem."""
    resolved = resolve(answers)
    refuse(resolved, "resolved")
    return resolved


def model_dir(answers):
    return answers["local_model_path"] or "model-cache/" + answers["base_model"].split("/")[-1]


def layer_count(answers):
    """The base model's layer count: from a local model's config.json, else the model table."""
    if answers["local_model_path"]:
        config = json.loads((Path(answers["local_model_path"]) / "config.json").read_text(encoding="utf-8"))
        return config["num_hidden_layers"]
    return answers["model"]["layers"]
