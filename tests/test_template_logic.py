"""The template's logic on plain dicts, without rendering: every refusal of the one table, the model table, the
workflow's choices (test_bake.py checks the same facts in rendered projects)."""

import json
import re

import pytest
from conftest import CONTEXT, DEMO_MODEL

from template_logic.answers import (
    DEVICES,
    KNOBS,
    REFUSALS,
    AnswerError,
    check_answers,
    layer_count,
    resolve,
)
from template_logic.tables import MODELS
from template_logic.workflow import CPU_INT4_ALSO, olive_config

# the answers a user gets by pressing Enter through the questions (as cookiecutter passes them to the hooks)
DEFAULTS = {name: (value[0] if isinstance(value, list) else value) for name, value in CONTEXT.items()} | {
    "project_slug": "phi-3-tone-classifier",  # cookiecutter renders the default's Jinja before the hooks run
}

# One case per check of REFUSALS: (check name, answers changed from the defaults, what the line says)
REFUSED = [
    ("moved_to_submit_time", {"azure_workspace": "ws"}, "azure_workspace is no longer asked"),
    ("text_template_parses", {"text_template": "{phrase} {tone"}, "text_template is not a valid template"),
    ("old_column_answers_agree", {"input_column": "text"}, "input_column='text' is now taken from text_template"),
    ("known_base_model", {"base_model": "gpt2"}, "base_model 'gpt2' is not one of"),
    ("known_device", {"device": "tpu"}, "device 'tpu' is not one of"),
    ("yes_or_no_settings", {"__export_search": "maybe"}, "__export_search='maybe': answer yes or no"),
    ("settings_in_range", {"__lora_r": "abc"}, "lora_r='abc' is not an integer"),
    ("steps_in_order", {"__min_steps": "500", "__step_cap": "400"}, "min_steps=500 is above step_cap=400"),
    ("slug", {"project_slug": "Bad Slug"}, "project_slug 'Bad Slug' must start"),
    ("columns_and_template", {"text_template": "Text: {phrase}"}, "must contain two placeholders"),
    ("azureml_on_gpu", {"compute": "azureml"}, "compute=azureml runs on a GPU cluster"),
    ("local_model", {"local_model_path": "relative/model"}, "must be an absolute path"),
    ("supported_combination", {"precision": "fp16"}, "precision=fp16 needs device=cuda"),
]


def test_every_refusal_of_the_table_has_a_case():
    assert [check.__name__ for _, check in REFUSALS] == [name for name, _, _ in REFUSED]
    assert {stage for stage, _ in REFUSALS} == {"given", "resolved"}


@pytest.mark.parametrize(("check", "changes", "message"), REFUSED, ids=[case[0] for case in REFUSED])
def test_each_refusal_says_what_to_change(check, changes, message):
    with pytest.raises(AnswerError) as refused:
        check_answers({**DEFAULTS, **changes})
    assert message in str(refused.value) and "\n" not in str(refused.value)
    stage = dict((c.__name__, s) for s, c in REFUSALS)[check]
    if stage == "given":  # refused before anything is derived: resolve() alone refuses it too
        with pytest.raises(AnswerError):
            resolve({**DEFAULTS, **changes})
    else:
        resolve({**DEFAULTS, **changes})


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("lora_alpha", "-1", "lora_alpha=-1 is out of range; use a value from 0.001 to 4096"),
        ("learning_rate", "fast", "learning_rate='fast' is not a number"),
        ("max_steps", "1.5", "max_steps='1.5' is not an integer"),
        ("early_stopping_patience", "-1", "early_stopping_patience=-1 is out of range"),
    ],
)
def test_settings_are_typed_and_bounded(name, text, message):
    with pytest.raises(AnswerError, match=re.escape(message)):
        resolve({**DEFAULTS, f"__{name}": text})


def test_the_defaults_pass_every_check_and_resolve_to_the_model_row():
    resolved = check_answers(DEFAULTS)
    row = MODELS[DEFAULTS["base_model"]]
    assert resolved["model"] is row and (resolved["training_device"], resolved["target_device"]) == ("cpu", "cpu")
    assert resolved["lora_r"] == int(row["training"]["lora_r"]) and resolved["max_steps"] is None
    assert (resolved["input_column"], resolved["output_column"]) == ("phrase", "tone")
    assert (resolved["olive_telemetry"], resolved["export_search"]) == ("no", "yes")


def test_old_names_of_a_replay_file_are_mapped_not_refused():
    resolved = resolve({**DEFAULTS, "lora_r": "8", "olive_telemetry": "yes"})
    assert resolved["lora_r"] == 8 and resolved["olive_telemetry"] == "yes"


def test_the_phi_rows_share_one_row_and_differ_only_in_size():
    """cookiecutter.json's `_phi`: the four Phi rows name it (`"like": "_phi"`) instead of four copies."""
    phi = {name: row for name, row in CONTEXT["_models"].items() if name.startswith("microsoft/")}
    assert len(phi) == 4 and all(set(row) == {"like", "size"} and row["like"] == "_phi" for row in phi.values())
    for name in phi:
        assert {key: value for key, value in MODELS[name].items() if key != "size"} == {
            key: value for key, value in CONTEXT["_phi"].items() if key != "like"
        }
    fields = {"architecture", "source", "size", "layers", "int4_recipe", "int4_also", "cpu_training", "training"}
    assert all(set(row) == fields for row in MODELS.values()), {name: set(row) for name, row in MODELS.items()}


def test_every_model_has_training_defaults_in_range():
    for name, model in MODELS.items():
        for knob, (kind, lowest, highest) in KNOBS.items():
            assert lowest <= kind(model["training"][knob]) <= highest, (name, knob)


@pytest.mark.parametrize("base_model", CONTEXT["base_model"])
def test_the_int4_recipes_are_the_model_rows(base_model):
    """The row's own recipe first (built alone when the search is off), the plain ones, then the row's extras: the
    Phi rows' blocks of 128."""
    answers = {**DEFAULTS, "base_model": base_model}
    recipes = olive_config(answers)["passes"]["builder"]
    row = MODELS[base_model]
    assert len(recipes) == 1 + len(CPU_INT4_ALSO) + len(row["int4_also"])
    assert recipes[0]["config"]["int4_algo_config"] == row["int4_recipe"]
    # the Phi rows avoid the k-quants: minutes per layer, over 20 GB for Phi-4-mini's lm_head (docs/measurements.md)
    assert base_model == DEMO_MODEL or not row["int4_recipe"].startswith("k_quant")
    assert [recipe["config"]["int4_block_size"] for recipe in recipes] == [32, 32, 32] + [
        extra["int4_block_size"] for extra in row["int4_also"]
    ]
    first_alone = olive_config({**answers, "__export_search": "no"})["passes"]["builder"]["config"]
    assert first_alone == recipes[0]["config"]


@pytest.mark.parametrize("base_model", CONTEXT["base_model"])
@pytest.mark.parametrize("device", CONTEXT["device"])
def test_training_settings_follow_where_it_trains(base_model, device):
    """On a GPU bfloat16 and gradient checkpointing; on CPU the model row's `cpu_training` (the Phi rows: bfloat16
    with checkpointing, for memory; SmolLM2: float32, its weights byte for byte)."""
    finetune = olive_config({**DEFAULTS, "base_model": base_model, "device": device})["passes"]["finetune"]["config"]
    on_gpu = DEVICES[device][0] == "cuda"
    expected = (
        {"torch_dtype": "bfloat16", "gradient_checkpointing": True} if on_gpu else MODELS[base_model]["cpu_training"]
    )
    assert finetune["torch_dtype"] == expected["torch_dtype"]
    assert finetune["training_args"]["gradient_checkpointing"] is expected["gradient_checkpointing"]


def test_a_model_trained_on_a_gpu_for_cpu_trains_as_cuda_and_exports_as_cpu():
    """device=cuda-train-cpu-run: the LoRA pass is cuda's (bfloat16, QLoRA computing in bfloat16, gradient
    checkpointing), the export cpu's (the int4 recipes for the CPU execution provider, and their search); Olive's
    host is the GPU, its target the CPU; the pip list is cpu's (the CPU runtime builds, scores and runs the model)."""
    from template_logic.stack import project_runtime

    def rendered(device):
        answers = {**DEFAULTS, "base_model": DEMO_MODEL, "finetune_method": "qlora", "device": device}
        return olive_config(answers), project_runtime(answers)

    (split, split_runtime), (gpu, _), (cpu, cpu_runtime) = map(rendered, ("cuda-train-cpu-run", "cuda", "cpu"))
    finetune = split["passes"]["finetune"]
    assert finetune == gpu["passes"]["finetune"] != cpu["passes"]["finetune"]
    trained_with = (finetune["config"]["torch_dtype"], finetune["config"]["compute_dtype"])
    assert trained_with == ("bfloat16", "bfloat16") and finetune["config"]["training_args"]["gradient_checkpointing"]
    recipes = split["passes"]["builder"]
    assert recipes == cpu["passes"]["builder"] != gpu["passes"]["builder"]
    assert len(recipes) == len(CPU_INT4_ALSO) + 1
    search = ("evaluators", "evaluator", "search_strategy", "evaluate_input_model")
    assert {key: split[key] for key in search} == {key: cpu[key] for key in search}
    assert not set(search) & set(gpu)
    assert split["systems"] == {
        "local_gpu": gpu["systems"]["local_system"],
        "local_cpu": cpu["systems"]["local_system"],
    }
    assert (split["host"], split["target"]) == ("local_gpu", "local_cpu")
    assert split_runtime == cpu_runtime == "cpu"
    assert set(DEVICES) == set(CONTEXT["device"])  # the table and the question's choices


@pytest.mark.parametrize("base_model", CONTEXT["base_model"])
def test_early_stopping_is_rendered_for_every_model_and_can_be_switched_off(base_model):
    def rendered(**overrides):
        config = olive_config({**DEFAULTS, "base_model": base_model, **overrides})
        args = config["passes"]["finetune"]["config"]["training_args"]
        # the callback needs the best checkpoint chosen on the validation loss, and a resume needs its count back
        assert args["load_best_model_at_end"] and args["metric_for_best_model"] == "eval_loss"
        assert args["restore_callback_states_from_checkpoint"] is True
        return config["data_configs"][0]["pre_process_data_config"]["early_stopping_patience"]

    table = int(MODELS[base_model]["training"]["early_stopping_patience"])
    assert rendered() == table >= 3  # 2 would have missed a measured best step (docs/training.md)
    assert rendered(__early_stopping_patience="0") == 0
    assert rendered(__early_stopping_patience="5") == 5


def test_the_layer_count_comes_from_a_local_model_else_the_table(tmp_path):
    assert layer_count({"local_model_path": "", "model": {"layers": 3}}) == 3
    (tmp_path / "config.json").write_text(json.dumps({"num_hidden_layers": 5}))
    assert layer_count({"local_model_path": str(tmp_path), "model": {"layers": 3}}) == 5
