"""The Foundry Local folder and the GGUF + Modelfile carry the trained prompt (slm/prompts.py), in both data
formats: each runtime's template, rendered as that runtime renders it, gives exactly the prompt infer.py
--eval gives for a row. A stub tokenizer stands in for the real one (no model needed); the GGUF is a tiny one
written with gguf's own writer and read back with its reader."""

import json
import re
from pathlib import Path

import gguf
import numpy as np
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from slm.errors import UserError
from slm.export import foundry
from slm.export import gguf as gguf_export
from slm.export.prompt_templates import go_template, jinja_chat_template, render_go_template, stop_tokens
from slm.project import ADAPTER_FILE, Project

ROOT = Path(__file__).resolve().parents[1]
# Jinja as transformers renders a chat template (trim_blocks, lstrip_blocks); the stub's templates are written
# with <% %> and << >> and converted, because this file is part of a cookiecutter template whose rendered
# files must not carry the statement delimiter
HF_JINJA = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)


def standard_delimiters(template):
    return template.replace("<%", "{" + "%").replace("%>", "%" + "}").replace("<<", "{" + "{").replace(">>", "}" + "}")


# a chat template that adds its own system turn when the messages bring none, as SmolLM2's does
TOKENIZER_TEMPLATE = standard_delimiters(
    "<% for m in messages %><% if loop.first and m.role != 'system' %><|system|>Default.<|end|>\n<% endif %>"
    "<|<< m.role >>|>\n<< m.content >><|end|>\n<% endfor %><% if add_generation_prompt %><|assistant|>\n<% endif %>"
)
TOKENS = ["<unk>", "<s>", "</s>", "<|end|>", "<|assistant|>", "a", "b"]


class StubTokenizer:
    """What the exports use of a Hugging Face tokenizer."""

    bos_token, eos_token, eos_token_id = "<s>", "</s>", 2
    chat_template = TOKENIZER_TEMPLATE

    def apply_chat_template(self, messages, tokenize, add_generation_prompt, chat_template=None):
        assert tokenize is False
        template = HF_JINJA.from_string(chat_template or self.chat_template)
        return template.render(messages=messages, add_generation_prompt=add_generation_prompt)

    def convert_ids_to_tokens(self, token_id):
        return TOKENS[token_id]

    def convert_tokens_to_ids(self, tokens):
        return [TOKENS.index(token) for token in tokens]


COLUMNS_ROWS = [
    {"phrase": "The storm knocked out the power.", "tone": "fear"},
    {"phrase": 'Say "{x}"\n', "tone": "joy"},
]
SYSTEM = 'Label the tone: "joy" or "fear".'
CHAT_ROWS = [
    {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "I won!"}]},
    {"messages": [{"role": "user", "content": "A storm {{ x }} came."}]},
]
for row, answer in zip(CHAT_ROWS, ("joy", "fear"), strict=True):
    row["messages"].append({"role": "assistant", "content": answer})


def project_of(data_format, tmp_path, system_prompt=None):
    """This project's config in one data format, its output folder in tmp_path, a stub ONNX model there."""
    config = json.loads((ROOT / "fine-tuning/olive-config.json").read_text(encoding="utf-8"))
    pre_process = config["data_configs"][0]["pre_process_data_config"]
    pre_process["data_format"] = data_format
    pre_process["text_template"] = "### Text: {phrase}\n### The tone is:\n{tone}"
    pre_process.pop("chat_template", None)
    config["output_dir"] = str(tmp_path / "model")
    project = Project(config, tmp_path / "project/fine-tuning/olive-config.json")
    project.__dict__["system_prompt"] = system_prompt  # the shared system turn of the training file
    model = Path(config["output_dir"])
    model.mkdir()
    (model / "genai_config.json").write_text(json.dumps({"model": {"eos_token_id": [2, 3]}}), encoding="utf-8")
    (model / "model.onnx").write_bytes(b"onnx")
    (model / "tokenizer_config.json").write_text(json.dumps({"chat_template": "the base model's"}), encoding="utf-8")
    return project


@pytest.fixture(autouse=True)
def stub_tokenizer(monkeypatch):
    for module in (foundry, gguf_export):
        monkeypatch.setattr(module, "load_tokenizer", lambda model_dir: StubTokenizer())


def user(text):
    return {"role": "user", "content": text}


def eval_cases(project):
    """(messages a client sends, the prompt infer.py --eval builds) for each row."""
    task, tokenizer = project.task, StubTokenizer()
    if project.data_format == "columns":
        return [([user(row["phrase"])], task.prompt_for_row(row, tokenizer)) for row in COLUMNS_ROWS]
    rows = CHAT_ROWS
    if project.system_prompt:  # every training conversation starts with the shared system turn
        rows = [{"messages": [{"role": "system", "content": SYSTEM}, *row["messages"][-2:]]} for row in rows]
    cases = [(row["messages"][:-1], task.prompt_for_row(row, tokenizer)) for row in rows]
    bare = "Nothing happened."  # a bare user message gets the shared system turn, as in serve.py
    return [*cases, ([user(bare)], task.prompt_for_input(bare, tokenizer, project.system_prompt))]


@pytest.mark.parametrize("data_format,system_prompt", [("columns", None), ("messages", None), ("messages", SYSTEM)])
def test_foundry_folder_carries_the_trained_prompt(tmp_path, data_format, system_prompt):
    project = project_of(data_format, tmp_path, system_prompt)
    folder = foundry.write_foundry_folder(project, out_dir=tmp_path / "foundry", name="tone")
    assert folder == tmp_path / "foundry/tone"
    assert sorted(p.name for p in folder.parent.iterdir()) == ["tone"]  # no staging folder left
    assert (folder / "model.onnx").read_bytes() == b"onnx" and (folder / "genai_config.json").is_file()
    record = json.loads((folder / "inference_model.json").read_text(encoding="utf-8"))
    assert record["Name"] == "tone" and set(record["PromptTemplate"]) == {"assistant", "prompt"}
    # the runtime reads the chat template from tokenizer_config.json first, else chat_template.jinja
    template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    assert json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))["chat_template"] == template
    for messages, prompt in eval_cases(project):
        assert HF_JINJA.from_string(template).render(messages=messages, add_generation_prompt=True) == prompt
        if len(messages) == 1 or messages[0]["content"] == system_prompt:  # one user turn: {Content} is its text
            assert record["PromptTemplate"]["prompt"].replace("{Content}", messages[-1]["content"]) == prompt


@pytest.mark.parametrize("data_format,system_prompt", [("columns", None), ("messages", None), ("messages", SYSTEM)])
def test_modelfile_template_renders_the_trained_prompt(tmp_path, data_format, system_prompt):
    project = project_of(data_format, tmp_path, system_prompt)
    template = go_template(project.task, StubTokenizer())
    text = gguf_export.modelfile_text("tone-Q4_K_M.gguf", template, ["</s>"], system_prompt, True)
    template = re.search(r'^TEMPLATE """(.*?)"""$', text, re.DOTALL | re.MULTILINE).group(1)
    system = re.search(r'^SYSTEM """(.*?)"""$', text, re.DOTALL | re.MULTILINE)
    assert text.startswith("FROM ./tone-Q4_K_M.gguf\n") and 'PARAMETER stop "</s>"\n' in text
    assert (system.group(1) if system else None) == system_prompt
    for messages, prompt in eval_cases(project):
        given_system = messages[0]["content"] if messages[0]["role"] == "system" else system_prompt
        if len(messages) - (messages[0]["role"] == "system") == 1:  # Ollama's .Prompt is one user message
            assert render_go_template(template, messages[-1]["content"], given_system or "") == prompt


def test_go_template_renderer_refuses_what_it_does_not_know():
    with pytest.raises(ValueError, match="range"):
        render_go_template("{" + "{ range .Messages }" + "}", "x")
    template = go_template(project_columns_task(), StubTokenizer())
    assert render_go_template(template, "hi") == "<s> ### Text: hi\n### The tone is:\n"


def project_columns_task():
    from slm.prompts import ColumnsTask

    return ColumnsTask.from_template("### Text: {phrase}\n### The tone is:\n{tone}")


def tiny_gguf(path):
    """A GGUF as the converter writes one: an architecture, a vocabulary, end-of-sequence, a tensor."""
    writer = gguf.GGUFWriter(path, arch="llama")
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(TOKENS)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_chat_template("the base model's template")
    writer.add_tensor("token_embd.weight", np.arange(len(TOKENS) * 4, dtype=np.float32).reshape(len(TOKENS), 4))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_gguf_carries_the_chat_template_and_stop_tokens(tmp_path):
    source, target = tmp_path / "model.gguf", tmp_path / "out/tone-F16.gguf"
    tiny_gguf(source)
    target.parent.mkdir()
    template = jinja_chat_template(project_columns_task(), StubTokenizer())
    gguf_export.write_gguf_with_prompt(source, target, "tone", template, [3, 2])  # answers end with <|end|>
    assert sorted(p.name for p in target.parent.iterdir()) == ["tone-F16.gguf"]  # no partial file left
    reader = gguf.GGUFReader(target)
    field = reader.get_field
    assert field(gguf.Keys.Tokenizer.CHAT_TEMPLATE).contents() == template
    assert field(gguf.Keys.General.NAME).contents() == "tone"
    assert field(gguf.Keys.Tokenizer.ADD_BOS).contents() is False  # the prompt brings its own special tokens
    tokens = field(gguf.Keys.Tokenizer.LIST).contents()
    stops = {tokens[field(key).contents()] for key in (gguf.Keys.Tokenizer.EOS_ID, gguf.Keys.Tokenizer.EOT_ID)}
    assert stops == {"</s>", "<|end|>"}
    original = gguf.GGUFReader(source).tensors[0]
    assert np.array_equal(reader.tensors[0].data, original.data) and reader.tensors[0].name == original.name


@pytest.mark.parametrize("data_format,first", [("columns", "</s>"), ("messages", "<|end|>")])
def test_stop_tokens_are_the_onnx_models_with_the_trained_answer_end_first(tmp_path, data_format, first):
    project = project_of(data_format, tmp_path)
    stops = stop_tokens(project.output_dir, project.task, StubTokenizer())
    assert stops[0] == first and sorted(stops) == ["</s>", "<|end|>"]  # genai_config.json's eos ids 2 and 3


def test_bad_input_is_one_error_and_writes_nothing(tmp_path, monkeypatch):
    project = project_of("columns", tmp_path)
    with pytest.raises(UserError, match="Q4_1"):  # the known names are listed
        gguf_export.export_gguf(project, "Q3_XYZ", out_dir=tmp_path / "gguf")
    monkeypatch.setattr(gguf_export.llama_peer, "peer_available", lambda: False)
    with pytest.raises(UserError, match="pip install llama-cpp-python"):
        gguf_export.export_gguf(project, "Q4_K_M", out_dir=tmp_path / "gguf")
    monkeypatch.setattr(gguf_export.llama_peer, "converter_available", lambda: True)
    with pytest.raises(UserError, match="footprint.json"):  # no merged model recorded: what to run
        gguf_export.export_gguf(project, "F16", out_dir=tmp_path / "gguf")
    (Path(project.output_dir) / ADAPTER_FILE).write_bytes(b"adapter")
    with pytest.raises(UserError, match="--merged-model"):
        gguf_export.export_gguf(project, "F16", out_dir=tmp_path / "gguf")
    with pytest.raises(UserError, match="export=merged"):
        foundry.write_foundry_folder(project, out_dir=tmp_path / "foundry")
    (Path(project.output_dir) / "genai_config.json").unlink()
    with pytest.raises(UserError, match="olive run"):
        foundry.write_foundry_folder(project, out_dir=tmp_path / "foundry")
    assert not (tmp_path / "gguf").exists() and not (tmp_path / "foundry").exists()


def test_a_failed_export_keeps_the_earlier_folder(tmp_path, monkeypatch):
    project = project_of("columns", tmp_path)
    folder = foundry.write_foundry_folder(project, out_dir=tmp_path / "foundry", name="tone")
    monkeypatch.setattr(foundry.shutil, "copy2", lambda *args: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        foundry.write_foundry_folder(project, out_dir=tmp_path / "foundry", name="tone")
    assert (folder / "inference_model.json").is_file() and sorted(p.name for p in folder.parent.iterdir()) == ["tone"]
