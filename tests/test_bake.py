"""Rendering: file sets, leftovers, parseable JSON/YAML, strict Olive validity, hostile answers."""

import itertools
import json

import pytest
import yaml
from conftest import AZUREML_ANSWERS, CONTEXT, DEMO_MODEL, OFFLINE, BakedProject

COMMON_FILES = {
    ".gitignore",
    "README.md",
    "datasets/README.md",
    "datasets/train.json",
    "datasets/eval.json",
    "fine-tuning/olive-config.json",
    "fine-tuning/check_config.py",
    "inferences/infer.py",
    "inferences/benchmark.py",
    "inferences/generators.py",
    "inferences/task.py",
    "gen-model/.gitkeep",
    "setup/requirements.txt",
    "setup/conda.yaml",
    "setup/install.py",
    "setup/get_model.py",
    "setup/model.json",
    "datasets/prepare.py",
    ".vscode/tasks.json",
    ".vscode/launch.json",
    ".vscode/extensions.json",
    ".vscode/settings.json",
    ".cookiecutter.json",
    "pyproject.toml",
    "tests/test_project.py",
}
AZUREML_FILES = {
    "fine-tuning/azureml/job.yml",
    "fine-tuning/azureml/submit.py",
    "fine-tuning/azureml/run_in_job.py",
    ".azureml/config.json",
    ".amlignore",
}

# Named combinations; together they cover every value of every choice.
COMBINATIONS = [
    pytest.param({}, id="default"),
    pytest.param(
        {
            "base_model": "microsoft/Phi-3-mini-128k-instruct",
            "finetune_method": "qlora",
            "device": "cuda",
            "precision": "fp16",
            **AZUREML_ANSWERS,
            "base_model_source": "azureml_registry",
            "azureml_registry_version": "7",
        },
        id="phi3-128k-qlora-cuda-fp16-azureml-registry",
    ),
    pytest.param(
        {
            "base_model": "microsoft/Phi-3.5-mini-instruct",
            "finetune_method": "lora",
            "device": "cuda",
            "precision": "int4",
        },
        id="phi35-lora-cuda-int4",
    ),
    pytest.param(
        {
            "base_model": "microsoft/Phi-4-mini-instruct",
            "finetune_method": "qlora",
            "device": "cpu",
            "precision": "fp32",
            "olive_telemetry": "yes",
        },
        id="phi4-qlora-cpu-fp32-telemetry",
    ),
    pytest.param(
        {"base_model": DEMO_MODEL, "finetune_method": "lora", "precision": "int4"}, id="smollm2-lora-cpu-int4"
    ),
    pytest.param(
        {"base_model": DEMO_MODEL, "finetune_method": "qlora", "device": "cuda", "precision": "fp32"},
        id="smollm2-qlora-cuda-fp32",
    ),
]


def test_combinations_cover_every_choice():
    for name, choices in CONTEXT.items():
        if (
            isinstance(choices, list)
            and not name.startswith("_")
            and name not in ("download_model", "install_dependencies")
        ):
            covered = {combo.values[0].get(name, choices[0]) for combo in COMBINATIONS}
            assert covered == set(choices), name


@pytest.mark.parametrize("answers", COMBINATIONS)
def test_exact_file_set(bake, answers):
    azureml = AZUREML_FILES if answers.get("compute") == "azureml" else set()
    assert bake(**answers).files() == COMMON_FILES | {"model-cache/.gitkeep"} | azureml


def test_local_model_path_drops_model_cache(bake, tmp_path):
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"architectures": ["Phi3ForCausalLM"]}))
    project = bake(local_model_path=str(model))
    assert project.files() == COMMON_FILES
    assert project.read_json("fine-tuning/olive-config.json")["input_model"]["model_path"] == str(model)
    assert project.read_json("setup/model.json")["source"] == "local"


@pytest.mark.parametrize("answers", COMBINATIONS)
def test_no_leftover_jinja_and_everything_parses(bake, answers):
    project = bake(**answers)
    for path in project.path.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert "{{ cookiecutter" not in text and "{{cookiecutter" not in text, path
            assert "{%" not in text, path
            if path.suffix == ".json":
                json.loads(text)
            if path.suffix in (".yaml", ".yml"):
                yaml.safe_load(text)


@pytest.mark.parametrize("answers", COMBINATIONS)
def test_config_is_strictly_valid_for_pinned_olive(bake, answers):
    project = bake(**answers)
    checker = project.module("fine-tuning/check_config.py")
    config = project.read_json("fine-tuning/olive-config.json")
    checker.check_config(config)  # raises on anything Olive would ignore or prune


@pytest.mark.parametrize("answers", COMBINATIONS)
def test_config_reflects_answers(bake, answers):
    project = bake(**answers)
    context = {**{k: (v[0] if isinstance(v, list) else v) for k, v in CONTEXT.items()}, **answers}
    config = project.read_json("fine-tuning/olive-config.json")
    finetune = config["passes"]["finetune"]
    architecture = CONTEXT["_models"][context["base_model"]]["architecture"]
    assert list(config["passes"]) == ["finetune", "merge", "builder"]
    assert finetune["type"] == {"lora": "LoRA", "qlora": "QLoRA"}[context["finetune_method"]]
    assert finetune["config"]["target_modules"] == CONTEXT["_target_modules"][architecture]
    assert finetune["config"]["r"] == int(context["lora_r"])
    assert finetune["config"]["training_args"]["max_steps"] == int(context["max_steps"])
    assert config["passes"]["builder"]["config"]["precision"] == context["precision"]
    provider = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}[context["device"]]
    assert config["systems"]["local_system"]["accelerators"][0]["execution_providers"] == [provider]
    assert config["input_model"]["type"] == "HfModel"
    if context["base_model_source"] == "azureml_registry":
        assert config["input_model"]["model_path"] == {
            "type": "azureml_registry_model",
            "registry_name": context["azureml_registry_name"],
            "name": context["base_model"].split("/")[1],
            "version": context["azureml_registry_version"],
        }
    else:
        assert config["input_model"]["model_path"] == "model-cache/" + context["base_model"].split("/")[1]
    for path in (
        config["cache_dir"],
        config["output_dir"],
        config["data_configs"][0]["load_dataset_config"]["data_files"],
    ):
        assert not path.startswith("/") and ".." not in path, path
    requirements = (project.path / "setup/requirements.txt").read_text()
    assert ("onnxruntime-genai-cuda==" in requirements) == (context["device"] == "cuda")


def test_strict_check_rejects_what_olive_would_silently_drop(bake):
    project = bake()
    checker = project.module("fine-tuning/check_config.py")
    config = project.read_json("fine-tuning/olive-config.json")
    bad_pass_key = json.loads(json.dumps(config))
    bad_pass_key["passes"]["finetune"]["config"]["lora_r"] = 64
    with pytest.raises(checker.ConfigError, match="lora_r"):
        checker.check_config(bad_pass_key)
    bad_training_arg = json.loads(json.dumps(config))
    bad_training_arg["passes"]["finetune"]["config"]["training_args"]["evaluation_strategy"] = "steps"
    with pytest.raises(checker.ConfigError, match="evaluation_strategy"):
        checker.check_config(bad_training_arg)
    pruned = json.loads(json.dumps(config))
    pruned["passes"]["builder"]["config"]["precision"] = "fp16"
    with pytest.raises(checker.ConfigError, match="ModelBuilder rejects"):
        checker.check_config(pruned)
    bad_pre_process = json.loads(json.dumps(config))
    bad_pre_process["data_configs"][0]["pre_process_data_config"]["source_max_len"] = 2048
    with pytest.raises(checker.ConfigError, match="source_max_len"):
        checker.check_config(bad_pre_process)


def test_strict_check_command_line(bake):
    project = bake()
    ok = project.run("fine-tuning/check_config.py")
    assert ok.returncode == 0, ok.stderr
    missing_model = project.run("fine-tuning/check_config.py", "--paths")
    assert missing_model.returncode == 1
    assert "ERROR:" in missing_model.stderr and "python setup/get_model.py" in missing_model.stderr


HOSTILE_NAME = "Ünïcødé \"quoted\" 'single' \\back\\slash\nnew line'''; import os; os.system('touch PWNED') #"
HOSTILE_TEMPLATE = "### «Text» \"{phrase}\" \\ ✓ '''\n### The tone is:\n{tone}"


def test_hostile_answers_render_valid_files_and_run_no_code(bake, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    project = bake(project_name=HOSTILE_NAME, text_template=HOSTILE_TEMPLATE, project_slug="hostile")
    config = project.read_json("fine-tuning/olive-config.json")
    assert config["data_configs"][0]["pre_process_data_config"]["text_template"] == HOSTILE_TEMPLATE
    yaml.safe_load((project.path / "setup/conda.yaml").read_text(encoding="utf-8"))
    assert HOSTILE_NAME.splitlines()[0] in (project.path / "README.md").read_text(encoding="utf-8")
    assert not list(tmp_path.rglob("PWNED")) and not list(project.path.rglob("PWNED"))
    project.module("fine-tuning/check_config.py").check_config(config)


def test_slug_is_derived_and_path_safe(bake):
    assert bake(project_name="My Ünïcode Project!").path.name == "my-unicode-project"


def test_sample_dataset_has_an_eval_split_with_no_overlap(bake):
    project = bake()
    train, held_out = project.read_json("datasets/train.json"), project.read_json("datasets/eval.json")
    assert len(train) + len(held_out) >= 200
    assert not {row["phrase"].lower() for row in train} & {row["phrase"].lower() for row in held_out}
    assert {row["tone"] for row in train} == {row["tone"] for row in held_out} == {"joy", "sadness", "fear", "surprise"}


def test_dataset_columns_follow_answers(bake):
    project = bake(input_column="sentence", output_column="label", text_template="Sentence: {sentence}\nLabel: {label}")
    rows = project.read_json("datasets/train.json") + project.read_json("datasets/eval.json")
    assert all(set(row) == {"sentence", "label"} for row in rows)


ALL_COMBINATIONS = list(
    itertools.product(CONTEXT["base_model"], CONTEXT["finetune_method"], CONTEXT["device"], CONTEXT["precision"])
)


@pytest.mark.parametrize(("base_model", "method", "device", "precision"), ALL_COMBINATIONS)
def test_every_combination_renders_a_config_olive_accepts_or_is_refused(cookies, base_model, method, device, precision):
    answers = {"base_model": base_model, "finetune_method": method, "device": device, "precision": precision}
    result = cookies.bake(extra_context={**OFFLINE, **answers})
    if (device, precision) == ("cpu", "fp16"):  # measured: Olive would silently produce no model
        assert result.exception is not None
        return
    assert result.exception is None, result.exception
    project = BakedProject(result)
    project.module("fine-tuning/check_config.py").check_config(project.read_json("fine-tuning/olive-config.json"))
