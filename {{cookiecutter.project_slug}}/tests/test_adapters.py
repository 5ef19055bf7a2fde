"""Choosing adapters (infer.py, serve.py) and serving many at once, with stand-ins for onnxruntime-genai."""

import threading
import time
import types
from pathlib import Path

import pytest

from slm.errors import UserError
from slm.infer import adapter_to_use
from slm.project import ADAPTER_FILE, Project
from slm.serve.backends import AdapterBackend
from slm.serve.cli import served_adapters
from slm.serve.protocol import GenerationFailed

MERGED = Project({"passes": {"merge": {"type": "MergeAdapterWeights"}}, "output_dir": "gen-model/model"})
ADAPTER = Project({"passes": {"adapter": {"type": "ExtractAdapters"}}, "output_dir": "gen-model/model"})


def infer_args(adapter=None, base=False, model=None):
    return types.SimpleNamespace(adapter=adapter, base=base, model=model)


def write_adapter(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ADAPTER_FILE).write_bytes(b"weights")


def test_infer_uses_the_project_adapter_by_default_and_none_for_the_base_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert adapter_to_use(infer_args(), MERGED) is None
    with pytest.raises(UserError, match="run `olive run"):
        adapter_to_use(infer_args(), ADAPTER)  # no olive run yet
    write_adapter(tmp_path / "gen-model/model")
    assert adapter_to_use(infer_args(), ADAPTER) == Path("gen-model/model") / ADAPTER_FILE
    assert adapter_to_use(infer_args("none"), ADAPTER) is None
    assert adapter_to_use(infer_args("other.onnx_adapter"), ADAPTER) == Path("other.onnx_adapter")
    # --model: the adapter beside that model, if it has one
    assert adapter_to_use(infer_args(model="gen-model/model"), MERGED) == Path("gen-model/model") / ADAPTER_FILE
    assert adapter_to_use(infer_args("none", model="gen-model/model"), MERGED) is None
    assert adapter_to_use(infer_args(model=str(tmp_path)), ADAPTER) is None
    assert adapter_to_use(infer_args(base=True), ADAPTER) is None


@pytest.mark.parametrize(
    ("project", "args", "message"),
    [
        (MERGED, infer_args("none"), "--adapter none needs an adapter export"),
        (ADAPTER, infer_args("x.onnx_adapter", base=True), "leave out --base"),
    ],
)
def test_infer_refuses_adapters_it_cannot_use(project, args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no model folder here
    with pytest.raises(UserError, match=message):
        adapter_to_use(args, project)


def serve_args(*adapters, model=None):
    return types.SimpleNamespace(adapter=list(adapters), model=model)


def test_server_model_ids_for_an_adapter_export(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_adapter(tmp_path / "gen-model/model")
    served = served_adapters(serve_args("support=other/a.onnx_adapter"), ADAPTER, "tone")
    assert served == {
        "tone": Path("gen-model/model") / ADAPTER_FILE,
        "tone-base": None,
        "support": Path("other/a.onnx_adapter"),
    }
    assert served_adapters(serve_args(model="merged-model"), MERGED, "tone") is None
    # a merged project's server given an adapter export's folder serves that model's adapter
    write_adapter(tmp_path / "elsewhere")
    assert served_adapters(serve_args(model="elsewhere"), MERGED, "tone")["tone"] == Path("elsewhere") / ADAPTER_FILE


@pytest.mark.parametrize(
    ("project", "given", "message"),
    [
        (MERGED, "x=a.onnx_adapter", "needs an adapter export"),
        (ADAPTER, "a.onnx_adapter", "write NAME=FILE"),
        (ADAPTER, "tone-base=a.onnx_adapter", "already served"),
    ],
)
def test_server_refuses_adapter_flags_it_cannot_use(project, given, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_adapter(tmp_path / "gen-model/model")
    with pytest.raises(UserError, match=message):
        served_adapters(serve_args(given, model="merged" if project is MERGED else None), project, "tone")


# ---- many adapters in one process: each request generates with its own adapter, in turn
SCRIPTS = {"a": [11, 12, 13], "b": [21, 22, 23], None: [1, 2], "broken": [9]}


class FakeGenerator:
    steps = []  # (adapter, token) of every step, in order

    def __init__(self, adapter):
        self.adapter, self.script = adapter, list(SCRIPTS[adapter])

    def is_done(self):
        return not self.script

    def generate_next_token(self):
        if self.adapter == "broken":
            raise RuntimeError("Invalid input name: lora_A")
        self.last = self.script.pop(0)
        FakeGenerator.steps.append((self.adapter, self.last))

    def get_next_tokens(self):
        return [self.last]


class FakeEngine:
    """What AdapterBackend uses of an slm.engines.OnnxEngine: loading adapters, one generator per request."""

    runtime, model, context_length, eos_ids = None, None, 64, set()

    def __init__(self):
        self.loaded = []

    def load_adapter(self, name, path):
        self.loaded.append(name)

    def generator(self, prompt_ids, search_options, guidance_regex=None, adapter=None):
        return FakeGenerator(adapter)


class FakeJob:
    def __init__(self, cancelled=False):
        self.items, self.cancelled, self.ended = [], cancelled, threading.Event()

    def _put(self, item):
        self.items.append(item)
        if item is None or isinstance(item, Exception):
            self.ended.set()


def test_requests_switch_adapters_per_generation_and_a_failing_one_stops_alone():
    adapters = {"a": "a.onnx_adapter", "b": "b.onnx_adapter", "base": None, "broken": "x.onnx_adapter"}
    engine = FakeEngine()
    tokenizer = types.SimpleNamespace(eos_token_id=0)
    backend = AdapterBackend(
        engine, tokenizer, "tone", types.SimpleNamespace(data_format="columns", one_line_answer=True), adapters
    )
    assert engine.loaded == ["a", "b", "broken"] and backend.models() == list(adapters)
    backend._active = 5
    jobs = {name: FakeJob() for name in backend.adapters}
    cancelled = FakeJob(cancelled=True)
    for name, job in jobs.items():
        backend._incoming.put((job, [0], {}, name))
    backend._incoming.put((cancelled, [0], {}, "a"))
    FakeGenerator.steps = []
    backend.start()
    deadline = time.monotonic() + 10
    for job in [*jobs.values(), cancelled]:
        assert job.ended.wait(max(0, deadline - time.monotonic()))
    assert jobs["a"].items == [11, 12, 13, None]
    assert jobs["b"].items == [21, 22, 23, None]
    assert jobs["base"].items == [1, 2, None]
    assert isinstance(jobs["broken"].items[-1], GenerationFailed) and len(jobs["broken"].items) == 1
    assert cancelled.items == [None]  # stopped at once, no token generated
    # one token per request in turn: the adapters alternate from one generation step to the next
    assert [adapter for adapter, _ in FakeGenerator.steps[:3]] == ["a", "b", None]
    assert backend._active == 0
