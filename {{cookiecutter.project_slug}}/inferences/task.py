"""The fine-tuned task as the model learned it, read from fine-tuning/olive-config.json.

The config is the single source of truth: the text template (and so the input and
output columns) and the base model folder come from there, so editing the config
changes training and inference together.
"""

import json
import string
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

OLIVE_CONFIG = Path("fine-tuning/olive-config.json")


class TaskError(Exception):
    """Bad input or missing files; the message says what to do."""


def load_olive_config(path=OLIVE_CONFIG):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaskError(f"{path} not found; run this from the project root") from None


def model_output_dir(config):
    return Path(config["output_dir"])


def base_model_dir(config):
    return Path(config["input_model"]["model_path"])


@dataclass
class Task:
    template: str
    input_column: str
    output_column: str

    @classmethod
    def from_olive_config(cls, config):
        pre_process = config["data_configs"][0]["pre_process_data_config"]
        template = pre_process["text_template"]
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
        # the template ends with the answer placeholder (the pre-generation hook enforces it)
        return cls(template=template, input_column=fields[0], output_column=fields[-1])

    def prompt(self, text, bos_token):
        """The training text up to where the answer starts, with the special tokens Olive added."""
        prefix = self.template[: self.template.rindex("{" + self.output_column + "}")]
        # Olive's text pre-processing (add_special_tokens=true) trains on f"{bos} {text} {eos}"
        return f"{bos_token or ''} {prefix.format(**{self.input_column: text})}"

    def load_rows(self, path):
        path = Path(path)
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TaskError(f"{path} not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise TaskError(f"{path} is not a JSON file: {error}") from None
        if not isinstance(rows, list) or not rows:
            raise TaskError(f"{path} must be a non-empty JSON array of objects")
        for number, row in enumerate(rows, start=1):
            for column in (self.input_column, self.output_column):
                if not isinstance(row, dict) or not str(row.get(column) or "").strip():
                    raise TaskError(f"{path}: row {number} has no value in column {column!r}")
        return rows


def normalise_label(text):
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
