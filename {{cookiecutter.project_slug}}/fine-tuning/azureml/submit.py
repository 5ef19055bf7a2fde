"""Submit fine-tuning/azureml/job.yml to Azure ML, stream its logs, bring the model back.

Run from the project root, after `az login`:
    python fine-tuning/azureml/submit.py             submit, stream logs, download into gen-model/model/
    python fine-tuning/azureml/submit.py --dry-run   validate and print the job; contacts nothing
    python fine-tuning/azureml/submit.py --no-wait   submit and print the job's studio URL only
    python fine-tuning/azureml/submit.py --download JOB_NAME   only download a finished job's model

The workspace comes from .azureml/config.json; credentials from DefaultAzureCredential
(az login, environment variables or a managed identity), never from a file here.
"""

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

JOB_FILE = Path("fine-tuning/azureml/job.yml")
WORKSPACE_FILE = Path(".azureml/config.json")
MODEL_DIR = Path("gen-model/model")
OUTPUT_NAME = "gen_model"


class SubmitError(Exception):
    pass


def load_job_offline(job_file=JOB_FILE):
    """Parse and validate the job with azure-ai-ml's own schema, without contacting Azure."""
    import yaml
    from azure.ai.ml import load_job

    # local paths in the job are relative to the job file
    base = job_file.parent
    raw = yaml.safe_load(job_file.read_text(encoding="utf-8"))
    problems = []
    if not (base / raw["environment"]["conda_file"]).is_file():
        problems.append("setup/conda.yaml is missing")
    if not (base / raw["code"] / "fine-tuning/olive-config.json").is_file():
        problems.append(f"code folder {raw['code']} does not contain fine-tuning/olive-config.json")
    if not (base / raw["inputs"]["datasets"]["path"] / "train.json").is_file():
        problems.append("the datasets input has no train.json")
    if problems:
        raise SubmitError("; ".join(problems))
    try:
        return load_job(source=str(job_file))
    except Exception as error:  # azure-ai-ml raises several validation error types
        raise SubmitError(f"{job_file} is not a valid Azure ML job: {error}") from None


def workspace():
    settings = json.loads(WORKSPACE_FILE.read_text(encoding="utf-8"))
    missing = [key for key in ("subscription_id", "resource_group", "workspace_name") if not settings.get(key)]
    if missing:
        raise SubmitError(f"{WORKSPACE_FILE} has no {', '.join(missing)}; fill it in")
    return settings


def ml_client():
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    return MLClient(DefaultAzureCredential(), **workspace())


def download_model(client, job_name):
    with tempfile.TemporaryDirectory() as staging:
        client.jobs.download(job_name, output_name=OUTPUT_NAME, download_path=staging)
        downloaded = next(Path(staging).rglob("genai_config.json"), None)
        if downloaded is None:
            raise SubmitError(f"job {job_name} produced no ONNX model in its {OUTPUT_NAME} output")
        if MODEL_DIR.exists():
            shutil.rmtree(MODEL_DIR)
        shutil.copytree(downloaded.parent, MODEL_DIR)
    print(f"Model downloaded into {MODEL_DIR}; try: python inferences/infer.py")


def main(argv=None):
    try:
        from azure.core.exceptions import AzureError
    except ImportError:
        print("ERROR: azure-ai-ml is missing: run `python setup/install.py` and use .venv's python", file=sys.stderr)
        return 1
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="validate and print the job without contacting Azure")
    parser.add_argument("--no-wait", action="store_true", help="submit and return without streaming logs")
    parser.add_argument("--download", metavar="JOB_NAME", help="only download the model of a finished job")
    args = parser.parse_args(argv)
    try:
        if args.download:
            download_model(ml_client(), args.download)
            return 0
        job = load_job_offline()
        if args.dry_run:
            workspace()
            print(job._to_yaml())
            print(f"OK: {JOB_FILE} is a valid Azure ML command job (nothing was sent)")
            return 0
        client = ml_client()
        submitted = client.jobs.create_or_update(job)
        print(f"Submitted {submitted.name}: {submitted.studio_url}")
        if args.no_wait:
            print(f"Later: python fine-tuning/azureml/submit.py --download {submitted.name}")
            return 0
        client.jobs.stream(submitted.name)
        download_model(client, submitted.name)
    except SubmitError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    except AzureError as error:
        print(f"ERROR: Azure refused: {error.message}. Check `az login` and {WORKSPACE_FILE}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Stopped streaming; the job keeps running. Download it later with --download JOB_NAME", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
