"""The trained text and the served prompt come from one definition (slm/prompts.py): with a stub tokenizer,
the prompt the model is served is exactly the prefix of the text it trained on, in both data formats,
with the tokenizer's chat template and with the config's own."""

import jinja2
import pytest

from slm.project import Project
from slm.prompts import ChatTask, ColumnsTask

# Jinja with <% %> and << >> delimiters: this file is part of a cookiecutter template, which must not
# carry the usual ones (a real tokenizer's template is plain Jinja; the stub only needs to render these)
TOKENIZER_TEMPLATE = (
    "<% for m in messages %><|<< m.role >>|><< m.content >><|end|>\n<% endfor %>"
    "<% if add_generation_prompt %><|assistant|><% endif %>"
)
OWN_TEMPLATE = (
    "<% for m in messages %>[<< m.role | upper >>] << m.content >> [END]\n<% endfor %>"
    "<% if add_generation_prompt %>[ASSISTANT] <% endif %>"
)
JINJA = jinja2.Environment(
    block_start_string="<%", block_end_string="%>", variable_start_string="<<", variable_end_string=">>"
)


class StubTokenizer:
    """What the prompts use of a Hugging Face tokenizer: special tokens and apply_chat_template."""

    bos_token, eos_token = "<s>", "</s>"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt, chat_template=None):
        assert tokenize is False
        template = JINJA.from_string(chat_template or TOKENIZER_TEMPLATE)
        return template.render(messages=messages, add_generation_prompt=add_generation_prompt)


ROW = {"phrase": "The storm knocked out the power.", "tone": "fear"}
CONVERSATION = {
    "messages": [
        {"role": "system", "content": "Label the tone."},
        {"role": "user", "content": "The storm knocked out the power."},
        {"role": "assistant", "content": "fear"},
    ]
}


def test_columns_prompt_is_the_trained_prefix():
    task = ColumnsTask.from_template("### Text: {phrase}\n### The tone is:\n{tone}")
    full, prompt = task.training_text(ROW, StubTokenizer())
    assert full == "<s> ### Text: The storm knocked out the power.\n### The tone is:\nfear </s>"
    assert prompt == task.prompt_for_row(ROW, StubTokenizer()) == task.prompt_for_input(ROW["phrase"], StubTokenizer())
    assert full.startswith(prompt) and full[len(prompt) :] == "fear </s>"


def test_a_space_before_the_answer_stays_with_the_answer():
    """'Label: {label}': the tokenizer joins the space to the answer's first word in the training text, so the
    served prompt ends before the space, where the trained answer tokens start."""
    task = ColumnsTask.from_template("Text: {phrase}\nLabel: {tone}")
    full, prompt = task.training_text(ROW, StubTokenizer())
    assert prompt.endswith("Label:") and full[len(prompt) :] == " fear </s>"
    assert task.prompt_for_row(ROW, StubTokenizer()) == prompt


@pytest.mark.parametrize("chat_template", [None, OWN_TEMPLATE])
def test_chat_prompt_is_the_trained_prefix_with_either_chat_template(chat_template):
    task = ChatTask("messages", chat_template)
    full, prompt = task.training_text(CONVERSATION, StubTokenizer())
    assert prompt == task.prompt_for_row(CONVERSATION, StubTokenizer())
    system = CONVERSATION["messages"][0]["content"]
    assert prompt == task.prompt_for_input(CONVERSATION["messages"][1]["content"], StubTokenizer(), system)
    assert full.startswith(prompt)
    _, spans = task.assistant_spans(CONVERSATION["messages"], StubTokenizer())
    # the learned span starts where the served prompt ends: the answer and its end-of-turn marker
    ((start, end),) = spans
    assert start == len(prompt) and full[start:end] == ("fear [END]" if chat_template else "fear<|end|>")


def test_the_configs_chat_template_reaches_the_served_prompt():
    config = {
        "data_configs": [
            {
                "load_dataset_config": {"data_files": "datasets/train.jsonl"},
                "pre_process_data_config": {"data_format": "messages", "chat_template": OWN_TEMPLATE},
            }
        ]
    }
    task = Project(config).task
    assert task.prompt_for_row(CONVERSATION, StubTokenizer()).endswith("[ASSISTANT] ")
