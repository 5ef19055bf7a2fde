"""What the Azure ML job runs on the cluster (see job.yml); not meant to be run locally.

1. copy the dataset job input into datasets/ (the code upload leaves datasets/ out, see .amlignore);
2. read the Hugging Face token from the workspace key vault secret named in HF_TOKEN_SECRET_NAME,
   with the cluster's managed identity, into this process's environment only (a public model
   needs none, so a missing secret is a warning);
3. get the base model, run `olive run --config fine-tuning/olive-config.json`;
4. copy gen-model/model/ into the job output, which submit.py downloads back into gen-model/model/.
"""

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path


def copy_datasets(source):
    target = Path("datasets")
    target.mkdir(exist_ok=True)
    for path in Path(source).iterdir():
        if path.is_file():
            shutil.copy2(path, target / path.name)


def load_hf_token():
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


def run(command):
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", required=True, help="the job's datasets input folder")
    parser.add_argument("--output", required=True, help="the job's gen_model output folder")
    args = parser.parse_args(argv)
    copy_datasets(args.datasets)
    load_hf_token()
    run([sys.executable, "setup/get_model.py"])
    run([sys.executable, "fine-tuning/check_config.py", "--paths"])
    run([sys.executable, "-m", "olive", "run", "--config", "fine-tuning/olive-config.json"])
    shutil.copytree("gen-model/model", args.output, dirs_exist_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
