"""compute=azureml: the Azure ML command job, its submit script, and answer checks. No test contacts Azure."""

import pytest
import yaml
from conftest import AZUREML_ANSWERS, OFFLINE
from cookiecutter.exceptions import FailedHookException

REGISTRY = {"base_model_source": "azureml_registry", "azureml_registry_version": "7"}

VARIANTS = [
    pytest.param({"finetune_method": "lora"}, id="lora-huggingface"),
    pytest.param({"finetune_method": "qlora"}, id="qlora-huggingface"),
    pytest.param({"finetune_method": "lora", **REGISTRY}, id="lora-registry"),
    pytest.param({"finetune_method": "qlora", **REGISTRY}, id="qlora-registry"),
]


@pytest.mark.parametrize("answers", VARIANTS)
def test_job_loads_offline_with_azure_ai_ml(bake, answers):
    from azure.ai.ml import load_job

    project = bake(**AZUREML_ANSWERS, **answers)
    job_file = project.path / "fine-tuning/azureml/job.yml"
    job = load_job(source=str(job_file))
    assert job.type == "command"
    assert job.compute == "gpu-a100"  # azure-ai-ml strips the "azureml:" prefix
    assert "fine-tuning/azureml/run_in_job.py" in job.command and "${{outputs.gen_model}}" in job.command
    # azure-ai-ml keeps local paths relative to the job file
    assert (job_file.parent / job.code).resolve() == project.path.resolve()
    assert (job_file.parent / job.inputs["datasets"].path).resolve() == (project.path / "datasets").resolve()
    assert "gen_model" in job.outputs
    raw = yaml.safe_load(job_file.read_text())
    assert (job_file.parent / raw["environment"]["conda_file"]).resolve() == (
        project.path / "setup/conda.yaml"
    ).resolve()
    # the token is referenced by secret name, never present as a value
    assert raw["environment_variables"]["HF_TOKEN_SECRET_NAME"] == "hf-token"
    assert "HF_TOKEN" not in raw["environment_variables"]


@pytest.mark.parametrize("answers", VARIANTS)
def test_config_and_environment_are_the_cuda_flavour(bake, answers):
    project = bake(**AZUREML_ANSWERS, **answers)
    config = project.read_json("fine-tuning/olive-config.json")
    project.module("fine-tuning/check_config.py").check_config(config)
    assert config["systems"]["local_system"]["accelerators"][0]["execution_providers"] == ["CUDAExecutionProvider"]
    assert config["passes"]["finetune"]["type"] == {"lora": "LoRA", "qlora": "QLoRA"}[answers["finetune_method"]]
    pip = yaml.safe_load((project.path / "setup/conda.yaml").read_text())["dependencies"][-1]["pip"]
    assert "onnxruntime-genai-cuda==0.14.1" in pip and "azure-ai-ml==1.35.2" in pip
    pinned = (project.path / "setup/requirements.txt").read_text().splitlines()
    assert [line for line in pinned if line and not line.startswith("#")] == pip  # one stack, two formats
    assert project.read_json(".azureml/config.json")["workspace_name"] == "ws-finetune"


def test_registry_model_is_olives_azureml_registry_input(bake):
    project = bake(**AZUREML_ANSWERS, **REGISTRY)
    from olive.resource_path import create_resource_path
    from olive.workflows.run.config import RunConfig

    run_config = RunConfig.parse_file_or_obj(project.read_json("fine-tuning/olive-config.json"))
    model_path = create_resource_path(run_config.input_model.config["model_path"])
    assert model_path.is_azureml_resource()
    assert model_path.get_path() == "azureml://registries/azureml/models/Phi-3-mini-4k-instruct/versions/7"
    result = project.run("setup/get_model.py")
    assert result.returncode == 0 and "Olive fetches it itself" in result.stdout


@pytest.mark.parametrize("answers", VARIANTS)
def test_submit_dry_run_validates_and_prints_without_azure(bake, answers):
    project = bake(**AZUREML_ANSWERS, **answers)
    result = project.run("fine-tuning/azureml/submit.py", "--dry-run", env={"AZURE_CONFIG_DIR": "/nonexistent"})
    assert result.returncode == 0, result.stderr
    assert "type: command" in result.stdout and "compute: azureml:gpu-a100" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("OK: fine-tuning/azureml/job.yml is a valid")


def test_submit_dry_run_reports_a_broken_job(bake):
    project = bake(**AZUREML_ANSWERS)
    (project.path / "setup/conda.yaml").unlink()
    result = project.run("fine-tuning/azureml/submit.py", "--dry-run")
    assert result.returncode == 1
    assert "ERROR: setup/conda.yaml is missing" in result.stderr


BAD = [
    pytest.param({"azure_workspace": ""}, "azure_workspace='' must be", id="empty-workspace"),
    pytest.param({"azure_compute": "1bad_cluster!"}, "azure_compute='1bad_cluster!' must be", id="bad-cluster"),
    pytest.param(
        {"azure_subscription_id": "my-sub"}, "azure_subscription_id='my-sub' must be a subscription GUID", id="sub"
    ),
    pytest.param({"device": "cpu"}, "compute=azureml runs on a GPU cluster", id="cpu"),
    pytest.param(
        {"base_model_source": "azureml_registry"}, "azureml_registry_version='' must be a version", id="no-version"
    ),
    pytest.param({"local_model_path": "/models/phi3"}, "leave it empty with compute=azureml", id="local-path"),
]


@pytest.mark.parametrize(("answers", "message"), BAD)
def test_bad_azure_answers_are_rejected(cookies, capfd, answers, message):
    result = cookies.bake(extra_context={**OFFLINE, **AZUREML_ANSWERS, **answers})
    assert isinstance(result.exception, FailedHookException)
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and message in errors[0], errors


def test_registry_source_needs_azureml(cookies, capfd):
    result = cookies.bake(extra_context={**OFFLINE, **REGISTRY})
    assert isinstance(result.exception, FailedHookException)
    assert "ERROR: base_model_source=azureml_registry needs compute=azureml" in capfd.readouterr().err
