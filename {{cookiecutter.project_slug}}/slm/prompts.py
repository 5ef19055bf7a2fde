"""Prompts built exactly as the model was trained, and scoring of its answers.

Two data formats, one interface (`prompt_for_input`, `prompt_for_row`, `reference`):
- ColumnsTask: the text template with an input and an answer column; the prompt is the
  training text up to where the answer starts.
- ChatTask: chat conversations; the prompt is the base model's chat template over every
  turn before the last assistant turn, which is the reference answer.
"""

import string
from collections import Counter
from dataclasses import dataclass


def template_fields(template):
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


@dataclass(frozen=True)
class ColumnsTask:
    template: str
    input_column: str
    output_column: str
    data_format = "columns"

    @classmethod
    def from_template(cls, template):
        fields = template_fields(template)
        # the input placeholder comes first, the answer last (the template's pre-generation hook enforces it)
        return cls(template=template, input_column=fields[0], output_column=fields[-1])

    @property
    def columns(self):
        return (self.input_column, self.output_column)

    def prompt_for_input(self, text, tokenizer, system_prompt=None):
        """The training text up to where the answer starts, with the special tokens Olive added."""
        prefix = self.template[: self.template.rindex("{" + self.output_column + "}")]
        # the training text is f"{bos} {filled template} {eos}" (see slm/olive_data.py)
        return f"{tokenizer.bos_token or ''} {prefix.format(**{self.input_column: text})}"

    def prompt_for_row(self, row, tokenizer):
        return self.prompt_for_input(str(row[self.input_column]), tokenizer)

    def input_of(self, row):
        return str(row[self.input_column])

    def reference(self, row):
        return str(row[self.output_column])


@dataclass(frozen=True)
class ChatTask:
    message_col: str = "messages"
    data_format = "messages"

    def prompt_for_messages(self, messages, tokenizer):
        return tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)

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
