"""Hooks: bad answers stop generation with one ERROR line; failed set-up steps keep the project.

No test here reaches the network: downloads run with the hub call replaced or with
HF_HUB_OFFLINE=1, and pip runs with no index.
"""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import OFFLINE
from cookiecutter.exceptions import FailedHookException


def _model_folder(tmp_path, architecture):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": [architecture]}))
    return str(folder)


BAD_ANSWERS = [
    pytest.param({"project_slug": "Bad Slug"}, "project_slug 'Bad Slug'", id="slug-space"),
    pytest.param({"project_slug": "-x"}, "project_slug '-x'", id="slug-dash"),
    pytest.param({"__lora_r": "abc"}, "lora_r='abc' is not an integer", id="r-text"),
    pytest.param({"__lora_r": "0"}, "lora_r=0 is out of range", id="r-zero"),
    pytest.param({"__lora_alpha": "-1"}, "lora_alpha=-1 is out of range", id="alpha-negative"),
    pytest.param({"__max_steps": "1.5"}, "max_steps='1.5' is not an integer", id="steps-float"),
    pytest.param({"__learning_rate": "fast"}, "learning_rate='fast' is not a number", id="lr-text"),
    pytest.param({"__learning_rate": "2"}, "learning_rate=2 is out of range", id="lr-high"),
    pytest.param({"__max_seq_len": "8"}, "max_seq_len=8 is out of range", id="seq-short"),
    pytest.param({"__batch_size": "0"}, "batch_size=0 is out of range", id="batch-zero"),
    pytest.param({"text_template": "Text: {phrase}"}, "must contain two placeholders", id="template-one-column"),
    pytest.param({"text_template": "no placeholders"}, "must contain two placeholders", id="template-none"),
    pytest.param({"text_template": "{phrase} {lang} {tone}"}, "only {phrase} and {tone} are", id="template-extra"),
    pytest.param({"text_template": "{tone}: {phrase} {tone}"}, "once each", id="template-answer-twice"),
    pytest.param({"text_template": "{phrase} {tone"}, "text_template is not a valid template", id="template-brace"),
    pytest.param({"text_template": "{a{b}} {tone}"}, "text_template", id="template-nested-braces"),
    pytest.param({"device": "cpu", "precision": "fp16"}, "precision=fp16 needs device=cuda", id="fp16-cpu"),
    pytest.param(
        {"device": "cuda-train-cpu-run", "precision": "fp16"}, "precision=fp16 needs device=cuda", id="fp16-runs-on-cpu"
    ),
    pytest.param({"local_model_path": "relative/model"}, "must be an absolute path", id="local-relative"),
    pytest.param({"local_model_path": "/nonexistent/model"}, "has no config.json", id="local-missing"),
]


@pytest.mark.parametrize(("answers", "message"), BAD_ANSWERS)
def test_bad_answer_fails_before_writing(cookies, capfd, answers, message):
    result = cookies.bake(extra_context={**OFFLINE, **answers})
    assert isinstance(result.exception, FailedHookException)
    error_lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith("ERROR:")]
    assert len(error_lines) == 1 and message in error_lines[0], error_lines
    assert result.project_path is None or not result.project_path.exists()


def test_local_model_of_another_architecture_is_rejected(cookies, capfd, tmp_path):
    local = _model_folder(tmp_path, "LlamaForCausalLM")
    result = cookies.bake(extra_context={**OFFLINE, "local_model_path": local})
    assert isinstance(result.exception, FailedHookException)
    err = capfd.readouterr().err
    assert "ERROR: local_model_path is a LlamaForCausalLM model" in err
    assert "choose base_model HuggingFaceTB/SmolLM2-135M-Instruct" in err


@pytest.mark.stack
def test_failed_download_keeps_project_and_prints_retry(cookies, capfd, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the hub call fails at once, as when offline
    monkeypatch.setenv("HF_TOKEN", "hf_do_not_write_me_0123456789")
    result = cookies.bake(extra_context={"__download_model": "yes", "install_dependencies": "no"})
    assert result.exception is None and result.exit_code == 0
    assert (result.project_path / "fine-tuning/olive-config.json").is_file()
    err = capfd.readouterr().err
    assert "ERROR: could not reach Hugging Face to download microsoft/Phi-3-mini-4k-instruct" in err
    assert f"Retry with:  cd {result.project_path} && python setup/get_model.py" in err
    for path in result.project_path.rglob("*"):
        if path.is_file():
            assert "hf_do_not_write_me" not in path.read_text(encoding="utf-8", errors="ignore"), path


def test_failed_install_keeps_project_and_prints_retry(cookies, capfd, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip fails at once instead of downloading
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    result = cookies.bake(extra_context={"download_model": "no", "install_dependencies": "yes"})
    assert result.exception is None and result.exit_code == 0
    assert (result.project_path / "setup/requirements.txt").is_file()
    assert (result.project_path / ".venv").is_dir()
    err = capfd.readouterr().err
    assert "pip install torch==2.13.0` failed" in err
    assert f"Retry with:  cd {result.project_path} && python setup/install.py" in err


def test_install_commands_put_torch_first(bake, monkeypatch):
    project = bake()
    install = project.script("setup/install.py")
    monkeypatch.chdir(project.path)
    monkeypatch.setenv("TORCH_INDEX_URL", "https://example.invalid/cpu")
    torch_command, requirements_command, project_command = install.install_commands("py")
    assert torch_command == [
        "py",
        "-m",
        "pip",
        "install",
        "torch==2.13.0",
        "--index-url",
        "https://example.invalid/cpu",
    ]
    assert requirements_command == ["py", "-m", "pip", "install", "-r", "setup/requirements.txt"]
    assert project_command == ["py", "-m", "pip", "install", "--no-deps", "-e", "."]  # the project's slm package


class FakeHub:
    """Stands in for huggingface_hub.snapshot_download."""

    def __init__(self, error=None):
        self.error, self.calls = error, []

    def __call__(self, repo_id, local_dir):
        self.calls.append((repo_id, local_dir))
        if self.error:
            raise self.error
        (local_dir / "config.json").parent.mkdir(parents=True, exist_ok=True)
        (local_dir / "config.json").write_text("{}")
        (local_dir / "model.safetensors").write_bytes(b"weights")


@pytest.mark.stack
def test_get_model_downloads_into_model_cache(bake, monkeypatch):
    import huggingface_hub

    project = bake()
    get_model = project.module("slm.get_model")
    monkeypatch.chdir(project.path)
    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    destination = get_model.get_model(get_model.load_spec())
    assert hub.calls == [("microsoft/Phi-3-mini-4k-instruct", destination)]
    assert destination.as_posix() == "model-cache/Phi-3-mini-4k-instruct" and get_model.is_complete(destination)
    get_model.get_model(get_model.load_spec())  # already complete: no second download
    assert len(hub.calls) == 1


@pytest.mark.stack
def test_interrupted_sharded_download_is_resumed_not_trusted(bake, monkeypatch):
    import huggingface_hub

    project = bake()
    get_model = project.module("slm.get_model")
    monkeypatch.chdir(project.path)
    # what an interrupted download of a two-shard model leaves: config, index, first shard
    partial = Path("model-cache/Phi-3-mini-4k-instruct")
    partial.mkdir(parents=True)
    (partial / "config.json").write_text("{}")
    shards = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    (partial / "model.safetensors.index.json").write_text(json.dumps({"weight_map": shards}))
    (partial / shards["a"]).write_bytes(b"first shard")
    assert not get_model.is_complete(partial)

    def finish_download(repo_id, local_dir):
        (local_dir / shards["b"]).write_bytes(b"second shard")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", finish_download)
    assert get_model.get_model(get_model.load_spec()) == partial
    assert get_model.is_complete(partial)


@pytest.mark.stack
def test_gated_model_error_says_what_to_do(bake, monkeypatch, capsys):
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    project = bake(base_model="microsoft/Phi-4-mini-instruct")
    get_model = project.module("slm.get_model")
    monkeypatch.chdir(project.path)
    response = SimpleNamespace(headers={}, request=None, status_code=403)  # what the hub answers for a gated repo
    monkeypatch.setattr(huggingface_hub, "snapshot_download", FakeHub(GatedRepoError("403 gated", response=response)))
    assert get_model.main([]) == 1
    err = capsys.readouterr().err
    assert "ERROR: microsoft/Phi-4-mini-instruct is gated: accept its licence" in err
    assert "Retry from the project root: python setup/get_model.py" in err
