"""The one definition of the text a model trains on and the prompt it is served, and answer scoring.

Two data formats, one interface:
- ColumnsTask: the text template with an input and an answer column. The training text is
  `f"{bos} {filled template} {eos}"` (what Olive's text pre-processing builds with
  add_special_tokens=true); the prompt is that text up to where the answer starts.
- ChatTask: chat conversations through the base model's chat template, or the config's own
  `chat_template`; the prompt is every turn before the last assistant turn, which is the answer.

`training_text(row, tokenizer)` (used by the pre-processing inside `olive run` and by prepare.py)
and `prompt_for_row` / `prompt_for_input` (used by infer.py, the benchmark and the server) are
built from the same pieces here, so the trained prefix and the served prompt cannot drift apart.
"""

import string
from collections import Counter
from dataclasses import dataclass


def template_fields(template):
    """The `{placeholder}` names of a text template, in order (ValueError if it does not parse)."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


@dataclass(frozen=True)
class ColumnsTask:
    template: str
    input_column: str
    output_column: str
    data_format = "columns"
    # the one rule for what of the generated text is the answer: a columns task's answer is its first line
    # (generation.AnswerText); a chat answer runs until the model ends it
    one_line_answer = True

    @classmethod
    def from_template(cls, template):
        fields = template_fields(template)
        if not fields:
            raise ValueError(f"text_template {template!r} has no {{column}} placeholder")
        # the input placeholder comes first, the answer last (the template's pre-generation hook enforces it)
        return cls(template=template, input_column=fields[0], output_column=fields[-1])

    @property
    def columns(self):
        return (self.input_column, self.output_column)

    def _prompt_text(self, row, tokenizer):
        prefix = self.template[: self.template.rindex("{" + self.output_column + "}")]
        # Without the spaces before the answer ("Label: {label}"): in the training text a tokenizer joins a
        # space to the word after it (" play_music"), so a prompt ending in a bare space token is one the
        # model never saw, and it often answered nothing (measured: 0.453 on a 7-intent set, 0.957 without it)
        return f"{tokenizer.bos_token or ''} {prefix.format(**row)}".rstrip(" \t")

    def training_text(self, row, tokenizer):
        """(the whole training text, the prompt part of it) of one row."""
        full = f"{tokenizer.bos_token or ''} {self.template.format(**row)} {tokenizer.eos_token or ''}"
        return full, self._prompt_text(row, tokenizer)

    def prompt_for_input(self, text, tokenizer, system_prompt=None):
        """The training text up to where the answer starts, with the special tokens Olive added."""
        return self._prompt_text({self.input_column: text}, tokenizer)

    def prompt_for_row(self, row, tokenizer):
        return self.prompt_for_input(str(row[self.input_column]), tokenizer)

    def input_of(self, row):
        return str(row[self.input_column])

    def reference(self, row):
        return str(row[self.output_column])


def common_prefix(a, b):
    """How many leading items two sequences share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass(frozen=True)
class ChatTask:
    message_col: str = "messages"
    # a Jinja chat template overriding the tokenizer's own (the pre-processing's `chat_template` key)
    chat_template: str | None = None
    data_format = "messages"
    one_line_answer = False  # ColumnsTask's comment

    def render(self, messages, tokenizer, add_generation_prompt):
        return tokenizer.apply_chat_template(
            list(messages),
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            chat_template=self.chat_template,
        )

    def training_text(self, row, tokenizer):
        """(the whole conversation as trained, the prompt before its last assistant turn)."""
        messages = row[self.message_col]
        return self.render(messages, tokenizer, False), self.render(messages[:-1], tokenizer, True)

    def assistant_spans(self, messages, tokenizer):
        """(full text, [(start, end) character spans of each assistant turn's content + end-of-turn marker]).

        The span of assistant turn i starts where the rendering of messages[:i] with the generation
        prompt ends, and ends where the rendering of messages[:i+1] stops agreeing with the full text;
        trailing whitespace after the marker (the template's newline) is left out, since generation
        stops at the marker.
        """
        full = self.render(messages, tokenizer, False)
        spans = []
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before = self.render(messages[:i], tokenizer, True) if i else ""
            start = common_prefix(before, full)
            end = common_prefix(self.render(messages[: i + 1], tokenizer, False), full)
            while end > start and full[end - 1].isspace():
                end -= 1
            if end > start:
                spans.append((start, end))
        return full, spans

    def prompt_for_messages(self, messages, tokenizer):
        return self.render(messages, tokenizer, True)

    def prompt_for_input(self, text, tokenizer, system_prompt=None):
        system = [{"role": "system", "content": system_prompt}] if system_prompt else []
        return self.prompt_for_messages([*system, {"role": "user", "content": text}], tokenizer)

    def prompt_for_row(self, row, tokenizer):
        return self.prompt_for_messages(row[self.message_col][:-1], tokenizer)

    def input_of(self, row):
        """The turns the model is given: every turn before the answer."""
        return row[self.message_col][:-1]

    def reference(self, row):
        return row[self.message_col][-1]["content"]


def normalise_label(text):
    """The first word, lower case, without surrounding punctuation: how a label answer is compared."""
    words = text.strip().split()
    return words[0].strip(".,;:!\"'").lower() if words else ""


def label_table(pairs):
    """pairs: (expected, predicted) -> (text table, accuracy)."""
    totals, correct = Counter(), Counter()
    for expected, predicted in pairs:
        totals[expected] += 1
        correct[expected] += expected == predicted
    lines = [f"{'label':<16}{'n':>5}{'correct':>9}{'accuracy':>10}"]
    for label in sorted(totals):
        lines.append(f"{label:<16}{totals[label]:>5}{correct[label]:>9}{correct[label] / totals[label]:>10.3f}")
    accuracy = sum(correct.values()) / max(1, sum(totals.values()))
    return "\n".join(lines), accuracy
