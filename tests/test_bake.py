"""Rendering: file sets, leftovers, parseable JSON/YAML, strict Olive validity, hostile answers."""

import itertools
import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import AZUREML_ANSWERS, CONTEXT, DEMO_MODEL, OFFLINE, BakedProject

from template_logic.answers import DEVICES
from template_logic.tables import MODELS
from template_logic.workflow import CPU_INT4_ALSO

COMMON_FILES = {
    ".gitignore",
    "README.md",
    "datasets/README.md",
    "fine-tuning/olive-config.json",
    "fine-tuning/check_config.py",
    "inferences/infer.py",
    "inferences/benchmark.py",
    "slm/__init__.py",
    "slm/train/__init__.py",
    "slm/export/__init__.py",
    "slm/serve/__init__.py",
    "slm/bench/__init__.py",
    "slm/generation.py",
    "slm/bench/measure.py",
    "slm/export/search_metrics.py",
    "slm/bench/benchmark.py",
    "slm/data.py",
    "slm/engines.py",
    "slm/errors.py",
    "slm/infer.py",
    "slm/metrics.py",
    "slm/get_model.py",
    "slm/train/check_config.py",
    "slm/train/olive_data.py",
    "slm/export/olive_eval.py",
    "slm/export/int4_by_tensor.py",
    "slm/olive_compat.py",
    "tests/test_olive_compat.py",
    "slm/export/search_report.py",
    "tests/test_export_search.py",
    "slm/train/prepare.py",
    "slm/train/data_report.py",
    "tests/test_prepare.py",
    "slm/project.py",
    "slm/prompts.py",
    "slm/train/report.py",
    "slm/train/schedule.py",
    "slm/train/footprint.py",
    "slm/train/checkpoints.py",
    "slm/train/early_stopping.py",
    "slm/train/labelled_logits.py",
    "slm/train/answer_accuracy.py",
    "slm/train/trainer_methods.py",
    "tests/test_labelled_logits.py",
    "tests/test_answer_accuracy.py",
    "tests/test_trainer_methods.py",
    "tests/test_early_stopping.py",
    "slm/train/training_meter.py",
    "tests/test_training_meter.py",
    "fine-tuning/report.py",
    "slm/progress.py",
    "slm/bench/bandwidth.py",
    "slm/bench/llama_peer.py",
    "tests/test_bandwidth.py",
    "tests/test_llama_peer.py",
    "tests/test_serve_logic.py",
    "tests/test_adapters.py",
    "slm/serve/cli.py",
    "slm/serve/app.py",
    "slm/serve/backends.py",
    "slm/serve/protocol.py",
    "slm/serve/text.py",
    "slm/bench/serve_load.py",
    "slm/serve/page.py",
    "inferences/serve.py",
    "inferences/serve_load.py",
    "inferences/export_foundry.py",
    "inferences/export_gguf.py",
    "slm/export/prompt_templates.py",
    "slm/export/foundry.py",
    "slm/export/gguf.py",
    "tests/test_exports.py",
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
    "tests/test_prompts.py",
    "tests/test_schedule.py",
    "tests/test_training_report.py",
    "tests/test_footprint.py",
}
DATA_FILES = {
    "columns": {"datasets/train.json", "datasets/validation.json", "datasets/eval.json"},
    "messages": {"datasets/train.jsonl", "datasets/validation.jsonl", "datasets/eval.jsonl"},
}
AZUREML_FILES = {
    "slm/train/azureml.py",
    "fine-tuning/azureml/job.yml",
    "fine-tuning/azureml/submit.py",
    "fine-tuning/azureml/run_in_job.py",
    ".azureml/config.json",
    ".amlignore",
}

# Named combinations, as cookiecutter-django's SUPPORTED_COMBINATIONS: together they cover every
# value of every choice; each is rendered, linted and self-tested (test_supported_combination_checks_itself).
COMBINATIONS = [
    pytest.param({}, id="default"),
    pytest.param({"finetune_method": "qlora", "precision": "fp32", "__olive_telemetry": "yes"}, id="qlora"),
    pytest.param({"base_model": "microsoft/Phi-3.5-mini-instruct", "device": "cuda", "precision": "fp16"}, id="cuda"),
    # the Azure ML job trains on its GPU and brings back a model for CPU: the split device rides on this bake
    pytest.param(
        {
            "base_model": "microsoft/Phi-4-mini-instruct",
            "finetune_method": "qlora",
            **AZUREML_ANSWERS,
            "device": "cuda-train-cpu-run",
        },
        id="azureml-cuda-train-cpu-run",
    ),
    pytest.param({"base_model": DEMO_MODEL, "data_format": "messages", "export": "adapter"}, id="messages-adapter"),
    pytest.param({"base_model": "microsoft/Phi-3-mini-128k-instruct", "local_model_path": "PHI3"}, id="local-model"),
]


@pytest.fixture(scope="session")
def bake_combination(cookies_session, tmp_path_factory):
    """Bake named answers, each combination once per session (the tests only read what is baked);
    "PHI3" stands for a local Phi-3 model folder made on the spot."""
    baked = {}

    def _bake(answers):
        key = json.dumps(answers, sort_keys=True)
        if key not in baked:
            if answers.get("local_model_path") == "PHI3":
                folder = tmp_path_factory.mktemp("my-phi3")
                (folder / "config.json").write_text(json.dumps({"architectures": ["Phi3ForCausalLM"]}))
                answers = {**answers, "local_model_path": str(folder)}
            result = cookies_session.bake(extra_context={**OFFLINE, **answers})
            assert result.exception is None, result.exception
            assert result.exit_code == 0
            baked[key] = BakedProject(result), {**DEFAULTS, **answers}
        return baked[key]

    return _bake


DEFAULTS = {name: (value[0] if isinstance(value, list) else value) for name, value in CONTEXT.items()}


def test_combinations_cover_every_choice():
    for name, choices in CONTEXT.items():
        if isinstance(choices, list) and not name.startswith("_") and name != "install_dependencies":
            covered = {combo.values[0].get(name, choices[0]) for combo in COMBINATIONS}
            assert covered == set(choices), name


@pytest.mark.parametrize("answers", COMBINATIONS)
def test_exact_file_set(bake_combination, answers):
    project, context = bake_combination(answers)
    expected = COMMON_FILES | DATA_FILES[context["data_format"]]
    expected |= AZUREML_FILES if context["compute"] == "azureml" else set()
    expected |= set() if context["local_model_path"] else {"model-cache/.gitkeep"}
    assert project.files() == expected


@pytest.mark.parametrize("answers", COMBINATIONS)
def test_supported_combination_is_linted_and_formatted(bake_combination, answers):
    """ruff check, and ruff format on every .py file, of every named combination."""
    project, _ = bake_combination(answers)
    lint = project.run("-m", "ruff", "check", "--no-cache", ".")
    assert lint.returncode == 0, lint.stdout[-3000:]
    python_files = sorted(path.relative_to(project.path).as_posix() for path in project.path.rglob("*.py"))
    formatted = project.run("-m", "ruff", "format", "--check", "--no-cache", *python_files)
    assert formatted.returncode == 0, formatted.stdout[-3000:] + formatted.stderr[-3000:]


@pytest.mark.stack
@pytest.mark.parametrize("answers", COMBINATIONS)
def test_supported_combination_checks_itself(bake_combination, answers):
    """The project's own tests on every named combination (they import its stack)."""
    project, _ = bake_combination(answers)
    # no __pycache__ left behind: the other tests read this same baked project
    own_tests = project.run("-m", "pytest", "-q", "-p", "no:cacheprovider", env={"PYTHONDONTWRITEBYTECODE": "1"})
    assert own_tests.returncode == 0, own_tests.stdout[-3000:]


# The generated README, read as a person reads it (every named combination)
GLUED_HEADING = re.compile(r"\S#{2,6} ")  # "....## Tested where": a heading run into the paragraph before it
PRECISION_AFTER_A = re.compile(r"\ba [*_`]*(int4|fp16|fp32)\b")  # "a int4": the precisions all take "an"
PATH_TOKEN = re.compile(r"`([\w.-]+(?:/[\w.-]*)*)`")
# settings table rows (by their key) whose value is a whole number: "64", or "100 / 1000" for two keys
WHOLE_NUMBER_KEYS = (".r`", ".alpha`", ".epochs`", ".min_steps`", "max_steps`", "_batch_size`", ".max_seq_len`")


def readme_sections(text):
    """The README outside code fences, as {heading: [lines]} ('' for the lines before the first heading)."""
    sections, heading, fenced = {"": []}, "", False
    for line in text.splitlines():
        fenced = fenced != line.startswith("```")
        if not fenced and line.startswith("#"):
            heading = line
            sections[heading] = []
        elif not fenced and not line.startswith("```"):
            sections[heading].append(line)
    return sections


def table_rows(lines):
    """The cells of each body row of the first Markdown table in lines."""
    rows = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines if line.startswith("|")]
    return rows[2:]


def readme_step_outputs(project):
    """What the README's steps write (into gen-model/, and prepare.py's data report beside the training file),
    from where the project defines it (not from the README)."""
    config = project.read_json(CONFIG)
    defined = (project.path / "slm/project.py").read_text()
    report_dir = re.search(r'REPORT_DIR = Path\("([^"]+)"\)', defined).group(1)
    data_report = re.search(r'DATA_REPORT = "([^"]+)"', defined).group(1)
    train_file = config["data_configs"][0]["load_dataset_config"]["data_files"]
    checkpoints = config["passes"]["finetune"]["config"]["training_args"]["output_dir"]
    return {
        config["output_dir"],
        config["cache_dir"],
        checkpoints,
        report_dir,
        f"{Path(train_file).parent}/{data_report}",
    }


@pytest.mark.parametrize("answers", COMBINATIONS)
def test_generated_readme_reads_right(bake_combination, answers):
    project, context = bake_combination(answers)
    text = (project.path / "README.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    fenced = False
    for number, line in enumerate(lines):
        fenced = fenced != line.startswith("```")
        if not fenced and line.startswith("#"):
            assert re.match(r"#{1,6} \S", line), f"line {number + 1} starts with # but is no heading: {line}"
            assert number == 0 or lines[number - 1] == "", f"heading on line {number + 1} follows text: {line}"
    assert not GLUED_HEADING.search(text), GLUED_HEADING.search(text).group()
    assert not PRECISION_AFTER_A.search(text), PRECISION_AFTER_A.search(text).group()
    sections = readme_sections(text)
    title = next(heading for heading in sections if heading.startswith("# "))[2:]
    if context["project_name"] == CONTEXT["project_name"]:  # the default names Phi-3: the title names the model
        assert context["base_model"].split("/")[-1] in title
    else:
        assert title == context["project_name"]

    settings = table_rows(sections["## Settings to change later"])
    whole = [row for row in settings if row[1].endswith(WHOLE_NUMBER_KEYS)]
    assert len(whole) == 6, settings  # r, alpha, epochs, min / max steps, max_steps, batch, max_seq_len
    for _, key, value in whole:
        assert re.fullmatch(r"\d+( / \d+)?|not set", value), f"{key}: {value} is not a whole number"

    folders = table_rows(sections["## What each folder holds"])
    step_outputs = readme_step_outputs(project)
    named = set()
    for folder_cell, job in folders:
        folder = folder_cell.strip("`").rstrip("/")
        assert (project.path / folder).is_dir(), folder
        for token in PATH_TOKEN.findall(job):
            if "/" not in token and "." not in token:
                continue  # a command (`pytest`), not a path
            # relative to its folder, else to the project (`slm/__init__.py`)
            inside = f"{folder}/{token}"
            path = token if not (project.path / inside).exists() and (project.path / token).exists() else inside
            path = path.rstrip("/")
            named.add(path)
            # what a step writes (gen-model/) must be a step's output; everything else is in the project
            assert (project.path / path).exists() or path in step_outputs, f"{path} (folder table) does not exist"
        if folder not in ("slm", "tests", "model-cache", "gen-model"):  # those are described, not listed
            for child in (project.path / folder).iterdir():
                assert f"{folder}/{child.name}" in named, f"{folder}/{child.name} is missing from the folder table"
    top_level = {path.name for path in project.path.iterdir() if path.is_dir()}
    assert top_level == {row[0].strip("`").rstrip("/") for row in folders}
    assert step_outputs <= named  # the table names every folder the steps write


def test_local_model_path_is_the_model_folder(bake, tmp_path):
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"architectures": ["Phi3ForCausalLM"]}))
    project = bake(local_model_path=str(model))
    assert project.read_json("fine-tuning/olive-config.json")["input_model"]["model_path"] == str(model)
    assert project.read_json("setup/model.json")["source"] == "local"


@pytest.mark.parametrize("answers", COMBINATIONS)
def test_no_leftover_jinja_and_everything_parses(bake_combination, answers):
    project, _ = bake_combination(answers)
    for path in project.path.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert "{{ cookiecutter" not in text and "{{cookiecutter" not in text, path
            assert "{%" not in text, path
            if path.suffix == ".json":
                json.loads(text)
            if path.suffix in (".yaml", ".yml"):
                yaml.safe_load(text)


@pytest.mark.stack
@pytest.mark.parametrize("answers", COMBINATIONS)
def test_config_is_strictly_valid_for_pinned_olive(bake_combination, answers):
    project, _ = bake_combination(answers)
    project.check_config()  # raises on anything Olive would ignore or prune


@pytest.mark.parametrize("answers", COMBINATIONS)
def test_config_reflects_answers_and_the_model_table(bake_combination, answers):
    project, context = bake_combination(answers)
    model = MODELS[context["base_model"]]  # its training settings resolved
    config = project.read_json("fine-tuning/olive-config.json")
    finetune = config["passes"]["finetune"]
    expected_passes = {"merged": ["finetune", "merge", "builder"], "adapter": ["finetune", "builder", "adapter"]}
    assert list(config["passes"]) == expected_passes[context["export"]]
    assert finetune["type"] == {"lora": "LoRA", "qlora": "QLoRA"}[context["finetune_method"]]
    assert finetune["config"]["target_modules"] == CONTEXT["_target_modules"][model["architecture"]]
    # the training settings are the chosen model's row of the table
    training = model["training"]
    args = finetune["config"]["training_args"]
    assert finetune["config"]["r"] == int(training["lora_r"])
    assert finetune["config"]["alpha"] == float(training["lora_alpha"])
    assert "max_steps" not in args  # the schedule follows the rows: slm/train/schedule.py
    assert args["learning_rate"] == float(training["learning_rate"])
    assert args["per_device_train_batch_size"] == int(training["batch_size"])
    pre_process = config["data_configs"][0]["pre_process_data_config"]
    assert pre_process["epochs"] == float(training["epochs"])
    assert pre_process["min_steps"] == int(training["min_steps"])
    assert pre_process["step_cap"] == int(training["step_cap"])
    # the validation rows go through the same pre-processing, without a schedule
    validation = config["data_configs"][1]
    assert finetune["config"]["eval_data_config"] == validation["name"]
    assert validation["pre_process_data_config"] == {
        key: value
        for key, value in pre_process.items()
        if key not in ("epochs", "min_steps", "step_cap", "seed", "data_version", "early_stopping_patience")
    }
    assert args["load_best_model_at_end"] and args["metric_for_best_model"] == "eval_loss"
    # the memory settings follow where it trains: the model row's `cpu_training` on CPU (the Phi rows: bfloat16 with
    # gradient checkpointing), bfloat16 with checkpointing on a GPU (test_template_logic.py, every model and device)
    training_device, target_device = DEVICES[context["device"]]
    training_on = model["cpu_training"] if training_device == "cpu" else {"torch_dtype": "bfloat16"}
    assert finetune["config"]["torch_dtype"] == training_on["torch_dtype"]
    assert args["gradient_checkpointing"] is (
        training_device == "cuda" or model["cpu_training"]["gradient_checkpointing"]
    )
    assert args["save_steps"] == args["eval_steps"] < 1 and args["train_sampling_strategy"] == "sequential"
    assert pre_process["max_seq_len"] == int(training["max_seq_len"])
    assert pre_process["answer_only"] is True and pre_process["data_format"] == context["data_format"]
    assert {builder["config"]["precision"] for builder in builders(config)} == {context["precision"]}
    # Olive's target (where the model runs) gives ModelBuilder its execution provider; its host is where training runs
    provider = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}[target_device]
    assert config["systems"][config["target"]]["accelerators"][0]["execution_providers"] == [provider]
    host_accelerator = config["systems"][config["host"]]["accelerators"][0]["device"]
    assert host_accelerator == {"cpu": "cpu", "cuda": "gpu"}[training_device]
    assert config["input_model"]["type"] == "HfModel"
    expected_model = context["local_model_path"] or "model-cache/" + context["base_model"].split("/")[1]
    assert config["input_model"]["model_path"] == expected_model
    for path in (
        config["cache_dir"],
        config["output_dir"],
        config["data_configs"][0]["load_dataset_config"]["data_files"],
        config["data_configs"][1]["load_dataset_config"]["data_files"],
        args["output_dir"],
    ):
        assert not path.startswith("/") and ".." not in path, path
    requirements = (project.path / "setup/requirements.txt").read_text()
    assert ("onnxruntime-genai-cuda==" in requirements) == (target_device == "cuda")
    assert ("onnxruntime-genai==" in requirements) == (target_device == "cpu")


CONFIG = "fine-tuning/olive-config.json"


def builders(config):
    """The ModelBuilder entries: a list when the export search tries several recipes."""
    builder = config["passes"]["builder"]
    return builder if isinstance(builder, list) else [builder]


EXPORT_SEARCH_CASES = [
    # (answers, searched)
    ({}, True),
    ({"export": "adapter"}, True),
    ({"finetune_method": "qlora"}, True),
    ({"__export_search": "no"}, False),
    ({"precision": "fp32"}, False),
    ({"device": "cuda"}, False),
    ({"device": "cuda-train-cpu-run"}, True),
]


@pytest.mark.parametrize(("answers", "searched"), EXPORT_SEARCH_CASES)
def test_the_export_search_is_rendered_for_int4_that_runs_on_cpu_only(bake, answers, searched):
    config = bake(base_model=DEMO_MODEL, **answers).read_json("fine-tuning/olive-config.json")
    search_keys = {"evaluators", "evaluator", "search_strategy", "evaluate_input_model"}
    assert (search_keys <= set(config)) == searched and (search_keys & set(config) == set()) != searched
    recipes = [builder["config"] for builder in builders(config)]
    if not searched:
        assert len(recipes) == 1
        if (answers.get("device"), answers.get("precision")) == (None, None):  # int4 on CPU: the first recipe
            assert recipes[0]["int4_algo_config"] == "k_quant_mixed"
        return
    assert len(recipes) == len(CPU_INT4_ALSO) + 1
    # the one built alone when the search is off: the model table's (SmolLM2: k_quant_mixed)
    assert recipes[0]["int4_algo_config"] == MODELS[DEMO_MODEL]["int4_recipe"] == "k_quant_mixed"
    # every recipe sets each setting Olive 0.13 would otherwise search (and fail on)
    assert all({"int4_block_size", "int4_is_symmetric", "int4_algo_config"} <= set(recipe) for recipe in recipes)
    assert len({json.dumps(recipe, sort_keys=True) for recipe in recipes}) == len(recipes)
    evaluator = config["evaluators"][config["evaluator"]]
    assert evaluator["user_script"] == "slm/export/olive_eval.py" and config["evaluate_input_model"] is False
    ranked = sorted((s["priority"], s["name"]) for s in evaluator["metrics"][0]["sub_types"] if s["priority"] > 0)
    assert ranked == [(1, "selection"), (2, "tokens_per_second")]
    assert config["search_strategy"]["sampler"] == "sequential"


def test_export_search_answer_is_yes_or_no(cookies):
    result = cookies.bake(extra_context={**OFFLINE, "base_model": DEMO_MODEL, "__export_search": "maybe"})
    assert result.exit_code != 0


@pytest.mark.parametrize("precision", ["int4", "fp32"])
def test_adapter_export_keeps_every_lora_matmul_out_of_int4(bake, precision):
    """ModelBuilder names each LoRA layer's MatMuls; the int4 export must leave all of them in fp32
    (k_quant_mixed fails on them, int4 LoRA weights decode slower), and only them."""
    config = bake(base_model=DEMO_MODEL, export="adapter", precision=precision).read_json(
        "fine-tuning/olive-config.json"
    )
    assert config["passes"]["adapter"] == {"type": "ExtractAdapters"}
    excluded = builders(config)[0]["config"].get("int4_nodes_to_exclude")
    if precision == "fp32":
        assert excluded is None
        return
    assert all(builder["config"]["int4_nodes_to_exclude"] == excluded for builder in builders(config))
    layers = MODELS[DEMO_MODEL]["layers"]
    assert len(excluded) == len(set(excluded)) == layers * 7 * 2
    assert "/model/layers.0/attn/q_proj/lora_A/MatMul" in excluded
    assert f"/model/layers.{layers - 1}/mlp/down_proj/lora_B/MatMul" in excluded
    assert not any("lora" not in name for name in excluded)


def test_training_settings_can_be_overridden_without_prompts(bake):
    project = bake(base_model=DEMO_MODEL, __learning_rate="0.0005", __max_steps="40", __epochs="2.5")
    config = project.read_json("fine-tuning/olive-config.json")
    args = config["passes"]["finetune"]["config"]["training_args"]
    assert args["learning_rate"] == 0.0005 and args["max_steps"] == 40
    assert config["data_configs"][0]["pre_process_data_config"]["epochs"] == 2.5


STRICT_REJECTIONS = [
    pytest.param(("passes", "finetune", "config"), "lora_r", 64, "lora_r", id="misspelt-pass-key"),
    pytest.param(
        ("passes", "finetune", "config", "training_args"),
        "evaluation_strategy",
        "steps",
        "evaluation_strategy",
        id="removed-training-argument",
    ),
    pytest.param(("passes", "builder", 1, "config"), "precision", "fp16", "ModelBuilder rejects", id="pruned-pass"),
    pytest.param(("search_strategy",), "samplr", "sequential", "samplr", id="search-key"),
    pytest.param(("evaluators", "validation"), "metricz", [], "metricz", id="evaluator-key"),
    pytest.param(
        ("evaluators", "validation", "metrics", 0, "sub_types", 1),
        "name",
        "tokens_per_secnd",
        "tokens_per_secnd",
        id="sub-metric-the-evaluator-does-not-report",
    ),
    pytest.param(
        ("data_configs", 0, "pre_process_data_config"), "source_max_len", 2048, "source_max_len", id="pre-process-key"
    ),
    pytest.param(
        ("data_configs", 0, "pre_process_data_config"), "answer_olny", False, "answer_olny", id="own-component-key"
    ),
    pytest.param(
        ("data_configs", 0, "pre_process_data_config"),
        "early_stoping_patience",
        2,
        "early_stoping_patience",
        id="misspelt-early-stopping-key",
    ),
]


@pytest.mark.stack
@pytest.mark.parametrize(("where", "key", "value", "message"), STRICT_REJECTIONS)
def test_strict_check_rejects_what_olive_would_silently_drop(bake, where, key, value, message):
    project = bake()
    config = project.read_json("fine-tuning/olive-config.json")
    section = config
    for step in where:
        section = section[step]
    section[key] = value
    with pytest.raises(Exception, match=message) as raised:
        project.check_config(config)
    assert type(raised.value).__name__ == "ConfigError"


@pytest.mark.stack
def test_strict_check_refuses_a_recipe_that_leaves_a_searchable_setting_out(bake):
    project = bake()
    config = project.read_json("fine-tuning/olive-config.json")
    del config["passes"]["builder"][2]["config"]["int4_is_symmetric"]
    with pytest.raises(Exception, match=r"passes.builder\[2\].config: set \['int4_is_symmetric'\]"):
        project.check_config(config)
    config["passes"]["builder"] = config["passes"]["builder"][0]  # one recipe, as before the search
    config["search_strategy"] = False
    project.check_config(config)


@pytest.mark.stack
def test_strict_check_command_line(bake):
    project = bake()
    ok = project.run("fine-tuning/check_config.py")
    assert ok.returncode == 0, ok.stderr
    missing_model = project.run("fine-tuning/check_config.py", "--paths")
    assert missing_model.returncode == 1
    assert "ERROR:" in missing_model.stderr and "python setup/get_model.py" in missing_model.stderr


HOSTILE_NAME = "Ünïcødé \"quoted\" 'single' \\back\\slash\nnew line'''; import os; os.system('touch PWNED') #"
HOSTILE_TEMPLATE = "### «Text» \"{phrase}\" \\ ✓ '''\n### The tone is:\n{tone}"


@pytest.mark.stack
def test_hostile_answers_render_valid_files_and_run_no_code(bake, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    project = bake(project_name=HOSTILE_NAME, text_template=HOSTILE_TEMPLATE, project_slug="hostile")
    config = project.read_json("fine-tuning/olive-config.json")
    assert config["data_configs"][0]["pre_process_data_config"]["text_template"] == HOSTILE_TEMPLATE
    yaml.safe_load((project.path / "setup/conda.yaml").read_text(encoding="utf-8"))
    assert HOSTILE_NAME.splitlines()[0] in (project.path / "README.md").read_text(encoding="utf-8")
    assert not list(tmp_path.rglob("PWNED")) and not list(project.path.rglob("PWNED"))
    project.check_config(config)


def test_slug_is_derived_and_path_safe(bake):
    assert bake(project_name="My Ünïcode Project!").path.name == "my-unicode-project"


def test_sample_dataset_has_an_eval_split_with_no_overlap(bake):
    project = bake()
    train, held_out = project.read_json("datasets/train.json"), project.read_json("datasets/eval.json")
    assert len(train) + len(held_out) >= 200
    assert not {row["phrase"].lower() for row in train} & {row["phrase"].lower() for row in held_out}
    assert {row["tone"] for row in train} == {row["tone"] for row in held_out} == {"joy", "sadness", "fear", "surprise"}


def test_dataset_columns_follow_the_template(bake):
    project = bake(text_template="Sentence: {sentence}\\nLabel: {label}")
    template = project.read_json("fine-tuning/olive-config.json")["data_configs"][0]["pre_process_data_config"]
    assert template["text_template"] == "Sentence: {sentence}\nLabel: {label}"  # \\n typed at the prompt is a newline
    rows = project.read_json("datasets/train.json") + project.read_json("datasets/eval.json")
    assert all(set(row) == {"sentence", "label"} for row in rows)


ALL_COMBINATIONS = list(
    itertools.product(CONTEXT["base_model"], CONTEXT["finetune_method"], CONTEXT["device"], CONTEXT["precision"])
)


@pytest.mark.stack
@pytest.mark.parametrize(("base_model", "method", "device", "precision"), ALL_COMBINATIONS)
def test_every_combination_renders_a_config_olive_accepts_or_is_refused(cookies, base_model, method, device, precision):
    answers = {"base_model": base_model, "finetune_method": method, "device": device, "precision": precision}
    result = cookies.bake(extra_context={**OFFLINE, **answers})
    if (DEVICES[device][1], precision) == ("cpu", "fp16"):  # measured: Olive would produce no model
        assert result.exception is not None
        return
    assert result.exception is None, result.exception
    project = BakedProject(result)
    project.check_config()


@pytest.mark.stack
@pytest.mark.parametrize("base_model", CONTEXT["base_model"])
def test_adapter_export_renders_a_config_olive_accepts_for_every_model(cookies, base_model):
    result = cookies.bake(extra_context={**OFFLINE, "base_model": base_model, "export": "adapter"})
    assert result.exception is None, result.exception
    project = BakedProject(result)
    project.check_config()
    builder = builders(project.read_json("fine-tuning/olive-config.json"))[0]["config"]
    assert len(builder["int4_nodes_to_exclude"]) == MODELS[base_model]["layers"] * 14
