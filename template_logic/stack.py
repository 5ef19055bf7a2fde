"""What a project installs and keeps: the pinned pip list (requirements.txt, conda.yaml, scripts/env.sh) and the
files of the rendered template that the answers do not use (the post-generation hook removes them)."""

from template_logic.answers import resolve
from template_logic.tables import DATA_FILES, STACK

AZUREML_FILES = ("fine-tuning/azureml", ".azureml", ".amlignore", "slm/train/azureml.py")


def pip_requirements(runtime, extras=()):
    """The pinned pip packages, in install order (torch first). runtime: the onnxruntime group ("cpu" or "cuda"),
    that of the device the model runs on; extras: names of further `_stack` groups."""
    return [STACK["torch"], *STACK["common"], *STACK[runtime], *(pin for extra in extras for pin in STACK[extra])]


def project_runtime(answers):
    """The onnxruntime packages a project installs: those of where its model runs. A GPU-trained model deployed to
    CPU needs no CUDA runtime: its training is torch's (PyPI's Linux wheel carries CUDA) and bitsandbytes', both in
    the common set, and the export search scores the int4 candidates on the CPU runtime (onnxruntime-gpu and
    onnxruntime cannot share an environment)."""
    return resolve(answers)["target_device"]


def project_extras(answers):
    """The `_stack` groups a project installs beyond the common set."""
    return [*(["azureml"] if answers["compute"] == "azureml" else []), "tools"]


def unneeded_files(answers):
    """Files and folders of the rendered template that these (resolved) answers do not use."""
    unneeded = []
    if answers["local_model_path"]:
        unneeded.append("model-cache")  # the project trains from the user's own folder
    if answers["compute"] != "azureml":
        unneeded += AZUREML_FILES
    for data_format, files in DATA_FILES.items():
        if data_format != answers["data_format"]:
            unneeded += files
    return unneeded
