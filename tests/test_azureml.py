"""compute=azureml: the Azure ML command job, its submit-time settings, and answer checks. No test contacts Azure."""

import json

import pytest
import yaml
from conftest import AZUREML_ANSWERS, OFFLINE, forget_olive_components
from cookiecutter.exceptions import FailedHookException

WORKSPACE = {
    "subscription_id": "00000000-1111-2222-3333-444444444444",
    "resource_group": "rg-finetune",
    "workspace_name": "ws-finetune",
}
REGISTRY_URI = "azureml://registries/azureml/models/Phi-3-mini-4k-instruct/versions/7"
# no Azure login anywhere near the tests
NO_AZURE = {"AZURE_CONFIG_DIR": "/nonexistent", "AZUREML_COMPUTE": "", "AZUREML_REGISTRY_MODEL": ""}


@pytest.fixture(params=["lora", "qlora"])
def azure_project(bake, request):
    project = bake(**AZUREML_ANSWERS, finetune_method=request.param)
    (project.path / ".azureml/config.json").write_text(json.dumps(WORKSPACE))
    return project


@pytest.mark.stack
def test_job_loads_offline_with_azure_ai_ml(azure_project):
    from azure.ai.ml import load_job

    project = azure_project
    job_file = project.path / "fine-tuning/azureml/job.yml"
    job = load_job(source=str(job_file))
    assert job.type == "command"
    assert job.compute == "gpu-cluster"  # azure-ai-ml strips the "azureml:" prefix
    assert "fine-tuning/azureml/run_in_job.py" in job.command and "${{outputs.gen_model}}" in job.command
    assert job.command.startswith("pip install --no-deps -e . && ")  # the job runs the project's own package
    # azure-ai-ml keeps local paths relative to the job file
    assert (job_file.parent / job.code).resolve() == project.path.resolve()
    assert (job_file.parent / job.inputs["datasets"].path).resolve() == (project.path / "datasets").resolve()
    assert "gen_model" in job.outputs
    raw = yaml.safe_load(job_file.read_text())
    assert "{" not in job_file.read_text().splitlines()[0]  # YAML, not JSON in a .yml file
    conda = (job_file.parent / raw["environment"]["conda_file"]).resolve()
    assert conda == (project.path / "setup/conda.yaml").resolve()
    # the token is referenced by secret name, never present as a value
    assert raw["environment_variables"]["HF_TOKEN_SECRET_NAME"] == "hf-token"
    assert "HF_TOKEN" not in raw["environment_variables"]


@pytest.mark.stack
def test_config_and_environment_are_the_cuda_flavour(azure_project):
    project = azure_project
    config = project.read_json("fine-tuning/olive-config.json")
    project.check_config(config)
    assert config["systems"]["local_system"]["accelerators"][0]["execution_providers"] == ["CUDAExecutionProvider"]
    pip = yaml.safe_load((project.path / "setup/conda.yaml").read_text())["dependencies"][-1]["pip"]
    assert "onnxruntime-genai-cuda==0.14.1" in pip and "azure-ai-ml==1.35.2" in pip
    assert not [pin for pin in pip if pin.startswith(("pytest==", "ruff=="))]  # test tools stay out of the image
    pinned = (project.path / "setup/requirements.txt").read_text().splitlines()
    assert [line for line in pinned if line and not line.startswith("#")] == [*pip, "pytest==9.2.0", "ruff==0.17.6"]


def test_a_job_that_trains_for_cpu_builds_a_cpu_model_with_the_cpu_runtime(bake):
    """device=cuda-train-cpu-run: the job trains on the cluster's GPU (torch from PyPI carries CUDA, bitsandbytes),
    builds and searches the int4 model for CPU with the CPU runtime, and its output comes back where infer.py looks."""
    project = bake(**{**AZUREML_ANSWERS, "device": "cuda-train-cpu-run"})
    config = project.read_json("fine-tuning/olive-config.json")
    assert config["systems"][config["host"]]["accelerators"][0]["device"] == "gpu"
    assert config["systems"][config["target"]]["accelerators"][0]["execution_providers"] == ["CPUExecutionProvider"]
    assert "search_strategy" in config
    pip = yaml.safe_load((project.path / "setup/conda.yaml").read_text())["dependencies"][-1]["pip"]
    assert "onnxruntime-genai==0.14.1" in pip and "bitsandbytes==0.50.2" in pip and pip[0].startswith("torch==")
    assert not [pin for pin in pip if "-gpu==" in pin or "-cuda==" in pin]
    job = yaml.safe_load((project.path / "fine-tuning/azureml/job.yml").read_text())
    assert job["outputs"] == {"gen_model": {"type": "uri_folder", "mode": "rw_mount"}}
    assert config["output_dir"] == "gen-model/model"  # where run_in_job copies from and submit.py downloads into


@pytest.mark.stack
def test_submit_dry_run_validates_and_prints_without_azure(azure_project):
    result = azure_project.run(
        "fine-tuning/azureml/submit.py", "--dry-run", "--compute", "gpu-a100", "--experiment", "tone-v2", env=NO_AZURE
    )
    assert result.returncode == 0, result.stderr
    assert "type: command" in result.stdout and "compute: azureml:gpu-a100" in result.stdout
    assert "compute gpu-a100, experiment tone-v2" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("OK: fine-tuning/azureml/job.yml is a valid")


@pytest.mark.stack
def test_submit_settings_come_from_the_environment_too(azure_project):
    env = {**NO_AZURE, "AZUREML_COMPUTE": "gpu-h100", "AZUREML_REGISTRY_MODEL": REGISTRY_URI}
    result = azure_project.run("fine-tuning/azureml/submit.py", "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    assert "compute: azureml:gpu-h100" in result.stdout and REGISTRY_URI in result.stdout


@pytest.mark.stack
def test_registry_model_becomes_olives_azureml_registry_input(azure_project, monkeypatch):
    """In the job, the registry model named at submit time replaces the configured base model."""
    from olive.resource_path import create_resource_path
    from olive.workflows.run.config import RunConfig

    project = azure_project
    azureml = project.module("slm.train.azureml")
    monkeypatch.chdir(project.path)
    monkeypatch.setenv("BASE_MODEL_REGISTRY", REGISTRY_URI)
    forget_olive_components()
    job_config = azureml.job_config(azureml.Project.load())
    run_config = RunConfig.parse_file_or_obj(json.loads(job_config.read_text()))
    model_path = create_resource_path(run_config.input_model.config["model_path"])
    assert model_path.is_azureml_resource() and model_path.get_path() == REGISTRY_URI
    assert project.read_json("fine-tuning/olive-config.json")["input_model"]["model_path"].startswith("model-cache/")


@pytest.mark.stack
def test_a_registry_model_for_cpu_builds_the_first_int4_recipe_alone(bake, monkeypatch):
    """The export search's fp32 reference needs the base model's folder, which a registry model fetched by Olive has
    not: the job's config builds the model table's first recipe alone, and the strict check accepts it."""
    project = bake(**{**AZUREML_ANSWERS, "device": "cuda-train-cpu-run"})
    azureml = project.module("slm.train.azureml")
    monkeypatch.chdir(project.path)
    monkeypatch.setenv("BASE_MODEL_REGISTRY", REGISTRY_URI)
    config = json.loads(azureml.job_config(azureml.Project.load()).read_text())
    rendered = project.read_json("fine-tuning/olive-config.json")
    assert config["passes"]["builder"] == rendered["passes"]["builder"][0]
    assert not set(azureml.EXPORT_SEARCH_KEYS) & set(config) and set(azureml.EXPORT_SEARCH_KEYS) <= set(rendered)
    project.check_config(config)


@pytest.mark.stack
def test_submit_dry_run_reports_a_broken_job(azure_project):
    (azure_project.path / "setup/conda.yaml").unlink()
    result = azure_project.run("fine-tuning/azureml/submit.py", "--dry-run", env=NO_AZURE)
    assert result.returncode == 1
    assert "ERROR: setup/conda.yaml is missing" in result.stderr


BAD_SETTINGS = [
    pytest.param({"workspace_name": ""}, [], "workspace_name='' (in .azureml/config.json) must be", id="workspace"),
    pytest.param({"subscription_id": "my-sub"}, [], "subscription_id='my-sub'", id="subscription"),
    pytest.param({}, ["--compute", "1bad_cluster!"], "compute='1bad_cluster!' (--compute", id="cluster"),
    pytest.param({}, ["--experiment", "a b"], "experiment='a b'", id="experiment"),
    pytest.param({}, ["--hf-token-secret", "no_underscores"], "hf_token_secret='no_underscores'", id="secret"),
    pytest.param({}, ["--registry-model", "Phi-3:7"], "must look like azureml://registries/", id="registry"),
]


@pytest.mark.stack
@pytest.mark.parametrize(("workspace", "flags", "message"), BAD_SETTINGS)
def test_bad_submit_settings_get_one_error_line_offline(bake, workspace, flags, message):
    project = bake(**AZUREML_ANSWERS)
    (project.path / ".azureml/config.json").write_text(json.dumps({**WORKSPACE, **workspace}))
    result = project.run("fine-tuning/azureml/submit.py", "--dry-run", *flags, env=NO_AZURE)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and message in errors[0], result.stderr


BAD_ANSWERS = [
    pytest.param({"device": "cpu"}, "compute=azureml runs on a GPU cluster", id="cpu"),
    pytest.param({"local_model_path": "/models/phi3"}, "leave it empty for compute=azureml", id="local-path"),
]


@pytest.mark.parametrize(("answers", "message"), BAD_ANSWERS)
def test_bad_azure_answers_are_rejected(cookies, capfd, answers, message):
    result = cookies.bake(extra_context={**OFFLINE, **AZUREML_ANSWERS, **answers})
    assert isinstance(result.exception, FailedHookException)
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and message in errors[0], errors
