"""The trained prompt in the forms other runtimes read it: a Jinja chat template (Foundry Local through ONNX
Runtime GenAI, llama.cpp, LM Studio), a `{Content}` template (Foundry Local's inference_model.json), a Go
template (Ollama's Modelfile), and the tokens the model ends its answer with.

Every form is cut from the one prompt slm.prompts builds (the text the model trained on, up to its answer):
the prompt for a marker text is rendered, and the marker is replaced by each runtime's placeholder. So no
form can drift from the trained prompt; one the runtime cannot express (a chat template that rewrites the
user's text) is refused with a UserError instead of being exported wrong.
"""

import json
import re
from pathlib import Path

from slm.errors import UserError
from slm.prompts import ChatTask

# marker texts: plain words, so that a chat template that trims or escapes the content leaves them whole
USER_MARK = "xqUSERTEXTqx"
SYSTEM_MARK = "xqSYSTEMTEXTqx"


def _tag(body):
    """A Jinja statement tag, written in pieces: this file is part of a cookiecutter template, whose
    rendered files must not hold the statement delimiter."""
    return "{" + "%- " + body + " %" + "}"


def _split_once(text, mark, what):
    pieces = text.split(mark)
    if len(pieces) != 2:
        raise UserError(
            f"the prompt template does not keep the {what} text as it is (it appears {len(pieces) - 1} times "
            "in the rendered prompt), so it cannot be written as another runtime's template"
        )
    return pieces


def prompt_around_user(task, tokenizer, system_prompt=None):
    """(before, after): the trained prompt for one user text is before + text + after."""
    return _split_once(task.prompt_for_input(USER_MARK, tokenizer, system_prompt), USER_MARK, "user's")


def content_template(task, tokenizer, system_prompt, placeholder):
    """The trained prompt for one user text with `placeholder` where the text goes (the shared system
    prompt of a chat project written in)."""
    return placeholder.join(prompt_around_user(task, tokenizer, system_prompt))


def _jinja_text(text):
    """Literal text inside a Jinja template, as a string expression: a template's own trailing newline is
    dropped by Jinja, and its text may hold a delimiter. (ONNX Runtime GenAI 0.14.1 reads the escapes
    \\n, \\" and \\\\ in a string, not \\uXXXX: non-ASCII text stays as it is.)"""
    return "{{ " + json.dumps(text, ensure_ascii=False) + " }}" if text else ""


def jinja_chat_template(task, tokenizer, system_prompt=None):
    """A Jinja chat template over OpenAI-style messages that renders the trained prompt.

    Columns: the last message's text in the text template, up to the answer. Chat: the project's own chat
    template (the config's, else the tokenizer's), with the system turn every training conversation
    shares put first when the messages bring none (as serve.py does)."""
    if not isinstance(task, ChatTask):
        before, after = prompt_around_user(task, tokenizer)
        return _jinja_text(before) + "{{ messages[-1]['content'] }}" + _jinja_text(after)
    template = task.chat_template or tokenizer.chat_template
    if not isinstance(template, str):
        raise UserError("the tokenizer has no chat template: set `chat_template` in the data config")
    if not system_prompt:
        return template
    system_turn = json.dumps({"role": "system", "content": system_prompt}, ensure_ascii=False)
    return (
        _tag("if messages[0]['role'] != 'system'")
        + _tag(f"set messages = [{system_turn}] + messages")
        + _tag("endif")
        + template
    )


def _go_text(text):
    """Literal text inside a Go template: a `{{` becomes a string action."""
    return '{{ "{{" }}'.join(text.split("{{"))


def go_template(task, tokenizer):
    """An Ollama TEMPLATE (Go template syntax) rendering the trained prompt of one user message: `.Prompt`
    where the user's text goes; in a chat project, `.System` as the system turn when one is set."""
    before, after = prompt_around_user(task, tokenizer)
    without_system = _go_text(before) + "{{ .Prompt }}" + _go_text(after)
    if not isinstance(task, ChatTask):
        return without_system
    rendered = task.prompt_for_input(USER_MARK, tokenizer, SYSTEM_MARK)
    system_before, rest = _split_once(rendered, SYSTEM_MARK, "system")
    middle, end = _split_once(rest, USER_MARK, "user's")
    with_system = _go_text(system_before) + "{{ .System }}" + _go_text(middle) + "{{ .Prompt }}" + _go_text(end)
    return "{{ if .System }}" + with_system + "{{ else }}" + without_system + "{{ end }}"


GO_ACTION = re.compile(r"\{\{\s*(.*?)\s*\}\}", re.DOTALL)


def render_go_template(template, prompt, system=""):
    """Render what go_template writes, as Ollama would for one user message: `.Prompt`, `.System`,
    `if .System` / `else` / `end` and string literals. Any other action is a ValueError, not a guess."""
    out, emitting = [], [True]  # a stack: whether the text at each if-depth is emitted
    for index, piece in enumerate(GO_ACTION.split(template)):
        if index % 2 == 0:
            out += [piece] if all(emitting) else []
        elif piece == "if .System":
            emitting.append(bool(system))
        elif piece == "else" and len(emitting) > 1:
            emitting[-1] = not emitting[-1]
        elif piece == "end" and len(emitting) > 1:
            emitting.pop()
        elif piece in (".Prompt", ".System") or piece.startswith('"'):
            value = {".Prompt": prompt, ".System": system}[piece] if piece[0] == "." else json.loads(piece)
            out += [value] if all(emitting) else []
        else:
            raise ValueError(f"unsupported Go template action {{{{ {piece} }}}}")
    if len(emitting) != 1:
        raise ValueError("an `if` without its `end`")
    return "".join(out)


def answer_end(task, tokenizer):
    """The text the trained answer is followed by (the end-of-turn or end-of-sequence token, and after)."""
    answer = "xqANSWERTEXTqx"
    if isinstance(task, ChatTask):
        row = {task.message_col: [{"role": "user", "content": USER_MARK}, {"role": "assistant", "content": answer}]}
    else:
        row = {task.input_column: USER_MARK, task.output_column: answer}
    full, _ = task.training_text(row, tokenizer)
    return _split_once(full, answer, "answer's")[1].lstrip()


def stop_tokens(onnx_dir, task, tokenizer):
    """The tokens generation stops at, as text: the ONNX model's (genai_config.json) and the tokenizer's
    end-of-sequence, the same set infer.py stops at; first the one the trained answers end with."""
    from slm.engines import genai_eos_ids

    genai_config = json.loads((Path(onnx_dir) / "genai_config.json").read_text(encoding="utf-8"))
    ids = sorted(genai_eos_ids(genai_config) | {tokenizer.eos_token_id} - {None})
    tokens = [tokenizer.convert_ids_to_tokens(token_id) for token_id in ids]
    end = answer_end(task, tokenizer)
    return sorted(tokens, key=lambda token: not end.startswith(token))
