"""The same `olive run` as an Azure ML command job: submit it (your machine) and run it (the cluster).

Submit, from the project root after `az login` (python fine-tuning/azureml/submit.py):
    submit.py                  submit, stream logs, download the model into the config's output folder
    submit.py --dry-run        validate every setting and the job, print it; contacts nothing
    submit.py --no-wait        submit and print the job's studio URL only
    submit.py --download JOB   only download a finished job's model

Where each setting comes from (a flag wins over the environment variable):
    workspace           .azureml/config.json (subscription_id, resource_group, workspace_name), the
                        file `az ml` and the Azure ML SDK already use
    --compute           AZUREML_COMPUTE            GPU cluster name (default: the job file's)
    --experiment        AZUREML_EXPERIMENT         experiment name (default: the job file's)
    --hf-token-secret   AZUREML_HF_TOKEN_SECRET    workspace key vault secret with the Hugging Face token
    --registry-model    AZUREML_REGISTRY_MODEL     azureml://registries/NAME/models/MODEL/versions/N: train
                                                    a registry model instead of downloading from Hugging Face
Credentials come from DefaultAzureCredential (az login, environment or managed identity), never a file.
"""

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from slm.errors import UserError, cli
from slm.project import Project

JOB_FILE = Path("fine-tuning/azureml/job.yml")
WORKSPACE_FILE = Path(".azureml/config.json")
OUTPUT_NAME = "gen_model"
# the config the job runs when it trains a registry model instead of the configured one
JOB_CONFIG = Path("gen-model/olive-config.azureml.json")

# name -> (pattern, what it must look like)
SHAPES = {
    "subscription_id": (r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$", "a subscription GUID"),
    "resource_group": (r"^[-\w.()]{1,90}$", "1-90 letters, digits, '-', '_', '.', '(' or ')'"),
    "workspace_name": (r"^[A-Za-z0-9][\w-]{2,32}$", "3-33 letters, digits, '-' or '_', starting alphanumeric"),
    "compute": (r"^[A-Za-z][A-Za-z0-9-]{1,14}[A-Za-z0-9]$", "3-16 letters, digits or '-', starting with a letter"),
    "experiment": (r"^[\w.-]{1,255}$", "letters, digits, '-', '_' or '.'"),
    "hf_token_secret": (r"^[A-Za-z0-9-]{1,127}$", "a key vault secret name: letters, digits or '-'"),
}
REGISTRY_MODEL = re.compile(r"^azureml://registries/([A-Za-z0-9][\w.-]*)/models/([A-Za-z0-9][\w.-]*)/versions/(\d+)$")


class SubmitError(UserError):
    pass


def check_shape(name, value, source):
    pattern, shape = SHAPES[name]
    if not re.match(pattern, value or ""):
        raise SubmitError(f"{name}={value!r} ({source}) must be {shape}")
    return value


def workspace():
    try:
        settings = json.loads(WORKSPACE_FILE.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SubmitError(
            f"{WORKSPACE_FILE.as_posix()} not found: download it from your workspace's page in Azure ML studio"
        ) from None
    for key in ("subscription_id", "resource_group", "workspace_name"):
        check_shape(key, settings.get(key), f"in {WORKSPACE_FILE.as_posix()}")
    return {key: settings[key] for key in ("subscription_id", "resource_group", "workspace_name")}


def registry_model(uri):
    """azureml://registries/NAME/models/MODEL/versions/N -> Olive's azureml_registry_model input."""
    match = REGISTRY_MODEL.match(uri)
    if not match:
        raise SubmitError(
            f"registry model {uri!r} must look like azureml://registries/NAME/models/MODEL/versions/N "
            "(see the model's page in Azure ML studio)"
        )
    name, model, version = match.groups()
    return {"type": "azureml_registry_model", "registry_name": name, "name": model, "version": version}


def load_job_offline(project, job_file=JOB_FILE):
    """Parse and validate the job with azure-ai-ml's own schema, without contacting Azure."""
    import yaml
    from azure.ai.ml import load_job

    base = job_file.parent  # local paths in the job are relative to the job file
    raw = yaml.safe_load(job_file.read_text(encoding="utf-8"))
    problems = []
    if not (base / raw["environment"]["conda_file"]).is_file():
        problems.append("setup/conda.yaml is missing")
    if not (base / raw["code"] / project.config_path).is_file():
        problems.append(f"code folder {raw['code']} does not contain {project.config_path.as_posix()}")
    if not (base / raw["code"] / project.train_file).is_file():
        problems.append(f"the datasets input has no {project.train_file.name}")
    if problems:
        raise SubmitError("; ".join(problems))
    try:
        return load_job(source=str(job_file))
    except Exception as error:  # azure-ai-ml raises several validation error types
        raise SubmitError(f"{job_file.as_posix()} is not a valid Azure ML job: {error}") from None


def apply_settings(job, args):
    """Put the submit-time settings into the job, each checked for shape."""
    if args.compute:
        job.compute = check_shape("compute", args.compute, "--compute or AZUREML_COMPUTE")
    if args.experiment:
        job.experiment_name = check_shape("experiment", args.experiment, "--experiment or AZUREML_EXPERIMENT")
    if args.hf_token_secret:
        job.environment_variables["HF_TOKEN_SECRET_NAME"] = check_shape(
            "hf_token_secret", args.hf_token_secret, "--hf-token-secret or AZUREML_HF_TOKEN_SECRET"
        )
    if args.registry_model:
        registry_model(args.registry_model)
        job.environment_variables["BASE_MODEL_REGISTRY"] = args.registry_model
    return job


def ml_client():
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    return MLClient(DefaultAzureCredential(), **workspace())


def download_model(client, job_name, model_dir):
    with tempfile.TemporaryDirectory() as staging:
        client.jobs.download(job_name, output_name=OUTPUT_NAME, download_path=staging)
        downloaded = next(Path(staging).rglob("genai_config.json"), None)
        if downloaded is None:
            raise SubmitError(f"job {job_name} produced no ONNX model in its {OUTPUT_NAME} output")
        if model_dir.exists():
            shutil.rmtree(model_dir)
        shutil.copytree(downloaded.parent, model_dir)
    print(f"Model downloaded into {model_dir.as_posix()}; try: python inferences/infer.py")


def submit_args(argv):
    parser = argparse.ArgumentParser(
        description="Submit the olive run to Azure ML, stream its logs, bring the model back."
    )
    parser.add_argument("--dry-run", action="store_true", help="validate and print the job without contacting Azure")
    parser.add_argument("--no-wait", action="store_true", help="submit and return without streaming logs")
    parser.add_argument("--download", metavar="JOB_NAME", help="only download the model of a finished job")
    for flag, variable, what in (
        ("--compute", "AZUREML_COMPUTE", "GPU compute cluster name"),
        ("--experiment", "AZUREML_EXPERIMENT", "experiment name"),
        ("--hf-token-secret", "AZUREML_HF_TOKEN_SECRET", "key vault secret holding the Hugging Face token"),
        ("--registry-model", "AZUREML_REGISTRY_MODEL", "azureml://registries/NAME/models/MODEL/versions/N"),
    ):
        parser.add_argument(flag, default=os.environ.get(variable), help=f"{what} (or {variable})")
    return parser.parse_args(argv)


@cli
def submit(argv=None):
    args = submit_args(argv)
    try:
        from azure.core.exceptions import AzureError
    except ModuleNotFoundError:
        raise UserError("azure-ai-ml is missing: run `python setup/install.py` and use .venv's python") from None
    project = Project.load()
    try:
        if args.download:
            download_model(ml_client(), args.download, project.output_dir)
            return 0
        settings = workspace()
        job = apply_settings(load_job_offline(project), args)
        if args.dry_run:
            print(job._to_yaml())
            print(f"compute {job.compute}, experiment {job.experiment_name}")
            print(
                f"OK: {JOB_FILE.as_posix()} is a valid Azure ML command job for workspace "
                f"{settings['workspace_name']} (nothing was sent)"
            )
            return 0
        client = ml_client()
        submitted = client.jobs.create_or_update(job)
        print(f"Submitted {submitted.name}: {submitted.studio_url}")
        if args.no_wait:
            print(f"Later: python fine-tuning/azureml/submit.py --download {submitted.name}")
            return 0
        client.jobs.stream(submitted.name)
        download_model(client, submitted.name, project.output_dir)
    except AzureError as error:
        raise UserError(f"Azure refused: {error.message}. Check `az login` and {WORKSPACE_FILE.as_posix()}") from None
    except KeyboardInterrupt:
        print("Stopped streaming; the job keeps running. Download it later with --download JOB_NAME", file=sys.stderr)
        return 130
    return 0


# ---- inside the job, on the cluster ----


def copy_datasets(source, project):
    target = project.train_file.parent
    target.mkdir(parents=True, exist_ok=True)
    for path in Path(source).iterdir():
        if path.is_file():
            shutil.copy2(path, target / path.name)


def load_hf_token():
    """The Hugging Face token from the workspace key vault, into this process's environment only."""
    secret_name = os.environ.get("HF_TOKEN_SECRET_NAME")
    if os.environ.get("HF_TOKEN") or not secret_name:
        return
    try:
        from azure.ai.ml import MLClient
        from azure.identity import DefaultAzureCredential
        from azure.keyvault.secrets import SecretClient

        credential = DefaultAzureCredential()
        workspace_name = os.environ["AZUREML_ARM_WORKSPACE_NAME"]
        client = MLClient(
            credential, os.environ["AZUREML_ARM_SUBSCRIPTION"], os.environ["AZUREML_ARM_RESOURCEGROUP"], workspace_name
        )
        vault_name = client.workspaces.get(workspace_name).key_vault.rsplit("/", 1)[-1]
        secret = SecretClient(f"https://{vault_name}.vault.azure.net", credential).get_secret(secret_name)
        os.environ["HF_TOKEN"] = secret.value
        print(f"Hugging Face token read from key vault secret {secret_name!r}")
    except Exception as error:  # a public model still downloads without a token
        print(f"WARNING: no Hugging Face token from key vault secret {secret_name!r} ({error}); continuing without")


# the export search's keys (rendered for an int4 model that runs on CPU: device cuda-train-cpu-run in a job)
EXPORT_SEARCH_KEYS = ("evaluators", "evaluator", "search_strategy", "evaluate_input_model")


def without_export_search(config):
    """The config building each pass's first recipe alone (as `__export_search=no` renders it): the search scores
    the candidates against the fine-tune merged into the base model's folder, which a registry model, fetched by
    Olive inside the job, does not have."""
    searched = [name for name, entry in config["passes"].items() if isinstance(entry, list)]
    for name in searched:
        config["passes"][name] = config["passes"][name][0]
    for key in EXPORT_SEARCH_KEYS:
        config.pop(key, None)
    if searched:
        print(f"export search off for a registry model: passes {searched} build their first recipe alone", flush=True)
    return config


def job_config(project):
    """The config the job runs: the project's own, or a copy that trains the registry model named at submit time."""
    uri = os.environ.get("BASE_MODEL_REGISTRY")
    if not uri:
        return project.config_path
    config = without_export_search(copy.deepcopy(project.config))  # the project's own config stays as it is
    config["input_model"]["model_path"] = registry_model(uri)
    JOB_CONFIG.parent.mkdir(parents=True, exist_ok=True)
    JOB_CONFIG.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return JOB_CONFIG


def run(command):
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


@cli
def run_in_job(argv=None):
    parser = argparse.ArgumentParser(description="What the Azure ML job runs on the cluster (see job.yml).")
    parser.add_argument("--datasets", required=True, help="the job's datasets input folder")
    parser.add_argument("--output", required=True, help="the job's gen_model output folder")
    args = parser.parse_args(argv)
    project = Project.load()
    copy_datasets(args.datasets, project)
    load_hf_token()
    config = job_config(project)
    if config == project.config_path:
        run([sys.executable, "setup/get_model.py"])
    run([sys.executable, "fine-tuning/check_config.py", config.as_posix(), "--paths"])
    run([sys.executable, "-m", "olive", "run", "--config", config.as_posix()])
    shutil.copytree(project.output_dir, args.output, dirs_exist_ok=True)
    return 0
