"""Reject bad answers before cookiecutter writes anything: one `ERROR:` line saying what to change."""

import json
import re
import string
import sys
from pathlib import Path

# The answers arrive as data: a JSON string literal, decoded here, never pasted into code.
ANSWERS = json.loads({{cookiecutter | to_json | to_json}})
# Jinja stops rendering here, so the braces below stay Python: {% raw %}

SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_ -]*$")

# name -> (type, lowest, highest)
KNOBS = {
    "lora_r": (int, 1, 1024),
    "lora_alpha": (float, 1e-3, 4096),
    "max_steps": (int, 1, 1_000_000),
    "learning_rate": (float, 1e-8, 1.0),
    "max_seq_len": (int, 16, 131_072),
    "batch_size": (int, 1, 1024),
}

# Measured with Olive 0.13.0: ModelBuilder prunes fp16 on the CPU execution provider
# ("FP16 is not supported on CPU") and `olive run` then exits 0 with no model.
UNSUPPORTED = {
    ("cpu", "fp16"): "precision=fp16 needs device=cuda (Olive's ModelBuilder has no fp16 on CPU); use int4 or fp32",
}


class AnswerError(Exception):
    pass


def check_slug(answers):
    if not SLUG.match(answers["project_slug"]):
        raise AnswerError(
            f"project_slug {answers['project_slug']!r} must start with a lowercase letter or digit and contain "
            "only lowercase letters, digits, '.', '_' or '-'"
        )


def check_knobs(answers):
    for name, (kind, lowest, highest) in KNOBS.items():
        raw = str(answers[name]).strip()
        try:
            value = kind(raw)
        except ValueError:
            raise AnswerError(f"{name}={raw!r} is not a{'n integer' if kind is int else ' number'}") from None
        if not lowest <= value <= highest:
            raise AnswerError(f"{name}={raw} is out of range; use a value from {lowest:g} to {highest:g}")


def template_fields(template):
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise AnswerError(f"text_template is not a valid template ({error}); write {{column}} placeholders") from None
    return [field for _, field, _, _ in parsed if field is not None]


def check_columns_and_template(answers):
    input_column, output_column = answers["input_column"], answers["output_column"]
    for name in ("input_column", "output_column"):
        if not COLUMN.match(answers[name]):
            raise AnswerError(f"{name}={answers[name]!r} must be a column name: letters, digits, '_', ' ' or '-'")
    if input_column == output_column:
        raise AnswerError("input_column and output_column must be different columns")
    fields = template_fields(answers["text_template"])
    for column in (input_column, output_column):
        if column not in fields:
            raise AnswerError(f"text_template must contain the placeholder {{{column}}}")
    extra = sorted(set(fields) - {input_column, output_column})
    if extra:
        raise AnswerError(f"text_template uses {extra}; only {{{input_column}}} and {{{output_column}}} are allowed")
    if fields[-1] != output_column or fields.count(output_column) != 1:
        raise AnswerError(
            f"text_template must end with the answer: {{{output_column}}} exactly once, after {{{input_column}}}"
        )


def check_local_model(answers):
    local = answers["local_model_path"].strip()
    if not local:
        return
    path = Path(local)
    if not path.is_absolute():
        raise AnswerError(f"local_model_path {local!r} must be an absolute path")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise AnswerError(f"local_model_path {local!r} has no config.json; point it at a Hugging Face model folder")
    architectures = json.loads(config_file.read_text(encoding="utf-8")).get("architectures") or ["?"]
    expected = ANSWERS["_models"][answers["base_model"]]["architecture"]
    if architectures[0] != expected:
        same_family = [name for name, model in ANSWERS["_models"].items() if model["architecture"] == architectures[0]]
        hint = f"choose base_model {same_family[0]}" if same_family else "use a Phi-3 or Llama-architecture model"
        raise AnswerError(
            f"local_model_path is a {architectures[0]} model but base_model {answers['base_model']} is "
            f"{expected}; {hint}"
        )


AZURE_FIELDS = {
    # name -> (pattern, what it must look like)
    "azure_subscription_id": (r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$", "a subscription GUID"),
    "azure_resource_group": (r"^[-\w.()]{1,90}$", "1-90 letters, digits, '-', '_', '.', '(' or ')'"),
    "azure_workspace": (r"^[A-Za-z0-9][\w-]{2,32}$", "3-33 letters, digits, '-' or '_', starting alphanumeric"),
    "azure_compute": (
        r"^[A-Za-z][A-Za-z0-9-]{1,14}[A-Za-z0-9]$",
        "3-16 letters, digits or '-', starting with a letter",
    ),
    "azure_experiment": (r"^[\w.-]{1,255}$", "letters, digits, '-', '_' or '.'"),
    "azure_hf_token_secret": (r"^[A-Za-z0-9-]{1,127}$", "a key vault secret name: letters, digits or '-'"),
}


def check_azureml(answers):
    if answers["compute"] != "azureml":
        if answers["base_model_source"] == "azureml_registry":
            raise AnswerError("base_model_source=azureml_registry needs compute=azureml (Olive fetches it in the job)")
        return
    for name, (pattern, shape) in AZURE_FIELDS.items():
        if not re.match(pattern, answers[name]):
            raise AnswerError(f"{name}={answers[name]!r} must be {shape}")
    if answers["device"] != "cuda":
        raise AnswerError("compute=azureml runs on a GPU cluster: answer device=cuda")
    if answers["local_model_path"].strip():
        raise AnswerError(
            "local_model_path is on this machine, not on the cluster: leave it empty with compute=azureml"
        )
    if answers["base_model_source"] == "azureml_registry":
        for name in ("azureml_registry_name", "azureml_registry_model"):
            if not re.match(r"^[A-Za-z0-9][\w.-]*$", answers[name]):
                raise AnswerError(f"{name}={answers[name]!r} must be a registry or model name")
        if not answers["azureml_registry_version"].isdigit():
            raise AnswerError(
                f"azureml_registry_version={answers['azureml_registry_version']!r} must be a version number "
                "(see the model's page in Azure ML studio)"
            )


def check_combination(answers):
    reason = UNSUPPORTED.get((answers["device"], answers["precision"]))
    if reason:
        raise AnswerError(reason)


def main():
    try:
        for check in (
            check_slug,
            check_knobs,
            check_columns_and_template,
            check_azureml,
            check_local_model,
            check_combination,
        ):
            check(ANSWERS)
    except AnswerError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
# {% endraw %}
