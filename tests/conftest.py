import collections
import contextlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[1]
CONTEXT = json.loads((TEMPLATE / "cookiecutter.json").read_text(encoding="utf-8"))
DEMO_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"

# pytest-cookies renders the context before cookiecutter puts the template on sys.path,
# and the context needs the template's local Jinja extension
sys.path.insert(0, str(TEMPLATE))

# valid answers for compute=azureml (nothing here ever contacts Azure)
AZUREML_ANSWERS = {"compute": "azureml", "device": "cuda"}

# Tool caches (ruff run from the top level, pytest run inside the template) are binary
# files that cookiecutter would try to render into every project: clear them first.
TOOL_CACHES = ("__pycache__", ".ruff_cache", ".pytest_cache")
for cache in (p for name in TOOL_CACHES for p in (TEMPLATE / "{{cookiecutter.project_slug}}").rglob(name)):
    shutil.rmtree(cache)

# Where CI's time goes, by file: a session fixture's setup counts in the file of its first user.
SECONDS_PER_FILE = collections.Counter()


def pytest_runtest_logreport(report):
    SECONDS_PER_FILE[report.nodeid.split("::")[0]] += report.duration


def pytest_terminal_summary(terminalreporter):
    if SECONDS_PER_FILE:
        terminalreporter.section("seconds per test file (setup, call and teardown)")
        for path, seconds in SECONDS_PER_FILE.most_common():
            terminalreporter.write_line(f"{seconds:8.1f} s  {path}")


# every test bakes offline unless it says otherwise
OFFLINE = {"download_model": "no", "install_dependencies": "no"}


def forget_olive_components():
    """Olive reads the source of an earlier registration of the same pre-processing component to compare
    the two, and an earlier baked project's copy may be deleted by now: forget it. (In use, a process
    has one project.)"""
    from olive.common.import_lib import import_module_from_file, import_user_module
    from olive.data.registry import Registry

    Registry._REGISTRY["pre_process_data"].pop("answer_only_pre_process", None)
    # both are cached by their arguments: clear them so that the next import registers it again
    import_user_module.cache_clear()
    import_module_from_file.cache_clear()


@dataclass
class BakedProject:
    """A rendered project, with helpers to read it and run its scripts."""

    result: object

    @property
    def path(self) -> Path:
        return Path(self.result.project_path)

    def files(self):
        return {p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()}

    def read_json(self, relative):
        return json.loads((self.path / relative).read_text(encoding="utf-8"))

    def module(self, name):
        """Import one of the project's slm modules from this project (for testing its functions in-process)."""
        for loaded in [key for key in sys.modules if key == "slm" or key.startswith("slm.")]:
            del sys.modules[loaded]  # another baked project's package may be loaded
        sys.path.insert(0, str(self.path))
        try:
            return importlib.import_module(name)
        finally:
            sys.path.remove(str(self.path))

    def script(self, relative):
        """Import a stand-alone script of the project by its path (setup/install.py runs before slm is installed)."""
        spec = importlib.util.spec_from_file_location(Path(relative).stem + "_under_test", self.path / relative)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def check_config(self, config=None):
        """The strict Olive check, in-process, on the rendered config (or the given one)."""
        config = config if config is not None else self.read_json("fine-tuning/olive-config.json")
        forget_olive_components()
        return self.module("slm.train.check_config").check_config(config, root=self.path)

    def run(self, *args, timeout=1800, env=None, stdin=""):
        """Run a command in the project folder with this Python, the project's package importable
        as setup/install.py makes it in .venv; returns CompletedProcess."""
        command = [sys.executable, *args]
        merged = {**os.environ, "OLIVE_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(self.path), **(env or {})}
        return subprocess.run(
            command, cwd=self.path, input=stdin, capture_output=True, text=True, timeout=timeout, env=merged
        )


@pytest.fixture
def bake(cookies):
    def _bake(**answers):
        result = cookies.bake(extra_context={**OFFLINE, **answers})
        assert result.exception is None, result.exception
        assert result.exit_code == 0
        return BakedProject(result)

    return _bake


# Shared by the end-to-end tests (test_e2e.py, test_serve.py)


def check(result):
    assert result.returncode == 0, f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="session")
def demo_model_dir(cookies_session):
    """SmolLM2 materialised once by a baked project's own get_model.py."""
    result = cookies_session.bake(extra_context={**OFFLINE, "base_model": DEMO_MODEL, "project_slug": "materialise"})
    project = BakedProject(result)
    check(project.run("setup/get_model.py"))
    return project.path / "model-cache/SmolLM2-135M-Instruct"


@pytest.fixture(scope="session")
def tiny_phi3_dir(tmp_path_factory, demo_model_dir):
    """A randomly initialised 2-layer Phi-3 (a few MB) with the demo model's tokenizer."""
    import torch
    from transformers import AutoTokenizer, Phi3Config, Phi3ForCausalLM

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(demo_model_dir)
    config = Phi3Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        # the non-LongRoPE Phi-3 builder requires these two to be equal
        max_position_embeddings=256,
        original_max_position_embeddings=256,
        rope_scaling=None,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    folder = tmp_path_factory.mktemp("tiny-phi3")
    Phi3ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


ADAPTER = "gen-model/model/adapter_weights.onnx_adapter"
ERROR_LINE = re.compile(r"^ERROR: .+$")  # one line: what went wrong and what to do
# Not the table's 64: the tiny model's projections are 64 wide, and with the rank equal to a projection's
# width onnxruntime 1.32 reuses the (empty) LoRA buffer for that projection's output when no adapter is
# active ("Shape mismatch attempting to re-use buffer. {1,13,0} != {1,13,64}"); real models are wider.
TINY_LORA_R = "8"


# The tiny Phi-3 exported merged with the search switched off: test_e2e's end-to-end run of it is also the
# project test_serve serves (one `olive run` for both files).
TINY_MERGED = {"finetune_method": "lora", "data_format": "columns", "export": "merged", "project_slug": "served"}


@pytest.fixture(scope="session")
def tiny_phi3_project(cookies_session, tiny_phi3_dir):
    """A tiny Phi-3 project after `olive run` (4 LoRA steps unless answered otherwise), made once a session for
    each set of answers. `search=False` switches the export search off in the rendered config, as documented."""
    projects = {}

    def train(search=True, **answers):
        key = (search, *sorted(answers.items()))
        if key not in projects:
            answers = {**OFFLINE, "local_model_path": str(tiny_phi3_dir), "__max_steps": "4", **answers}
            project = BakedProject(cookies_session.bake(extra_context=answers))
            if not search:
                config = {**project.read_json("fine-tuning/olive-config.json"), "search_strategy": False}
                (project.path / "fine-tuning/olive-config.json").write_text(json.dumps(config))
            check(project.run("-m", "olive", "run", "--config", "fine-tuning/olive-config.json"))
            projects[key] = project
        return projects[key]

    return train


@pytest.fixture(scope="session")
def tiny_phi3_adapters(tiny_phi3_project):
    """Two LoRA fine-tunes of the same tiny Phi-3, each exported as an adapter (different learning rates)."""
    answers = {"export": "adapter", "__lora_r": TINY_LORA_R, "__export_search": "no"}  # search: test_e2e's
    return [
        tiny_phi3_project(**answers, project_slug=slug, __learning_rate=learning_rate)
        for slug, learning_rate in (("phi3-adapter-one", "0.05"), ("phi3-adapter-two", "0.02"))
    ]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(project, key=None):
    """`python inferences/serve.py` of a baked project on a free port; yields its base URL, stops it after."""
    port = free_port()
    log_path = project.path / "serve.log"
    env = {**os.environ, "SERVE_API_KEY": key or "", "PYTHONPATH": str(project.path)}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "inferences/serve.py", "--port", str(port)],
            cwd=project.path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/", timeout=2)
                break
            except OSError:
                if process.poll() is not None or time.time() > deadline:
                    process.kill()
                    pytest.fail(log_path.read_text())
                time.sleep(0.5)
        try:
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert process.returncode in (0, -15), log_path.read_text()
