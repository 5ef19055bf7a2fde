"""Bring your own data: check a CSV, JSON array or JSON Lines file and split it into
datasets/train.json and datasets/eval.json.

Run from the project root:
    python datasets/prepare.py SOURCE [--eval-ratio 0.2] [--seed 0]

- The columns come from the text template in fine-tuning/olive-config.json; every row
  must have a non-empty value in each (errors name the file, row and column; every bad
  row is reported, not just the first).
- Duplicate rows and rows longer than max_seq_len tokens (counted with the base model's
  tokenizer when it is in model-cache/) are reported.
- The split is deterministic for a given seed. SOURCE is only read; the two outputs are
  written together, only after every check passed, so a failure leaves no partial output.
"""

import argparse
import csv
import json
import os
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inferences"))

from task import Task, TaskError, base_model_dir, load_olive_config  # noqa: E402

TRAIN = Path("datasets/train.json")
EVAL = Path("datasets/eval.json")


class DataError(Exception):
    pass


def read_rows(source):
    """Return a list of dicts from CSV, JSON (array of objects) or JSON Lines."""
    try:
        text = source.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"{source}: not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    except FileNotFoundError:
        raise DataError(f"{source}: file not found") from None
    suffix = source.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames:
            raise DataError(f"{source}: empty CSV, expected a header row")
        return list(reader)
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise DataError(f"{source}: row {number}: not valid JSON ({error.msg})") from None
        return rows
    if suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"{source}: not valid JSON ({error.msg} at line {error.lineno})") from None
        if not isinstance(rows, list):
            raise DataError(f"{source}: expected a JSON array of objects (a table), got {type(rows).__name__}")
        return rows
    raise DataError(f"{source}: unknown format {suffix!r}; use .csv, .json (array) or .jsonl")


def check_rows(source, rows, columns):
    """Every problem, one line each: file, row number (1-based data rows), column."""
    if not rows:
        raise DataError(f"{source}: no rows")
    problems = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            problems.append(f"{source}: row {number}: not an object with columns (a table row)")
            continue
        for column in columns:
            if column not in row:
                problems.append(f"{source}: row {number}: column {column!r} is missing")
            elif row[column] is None or not str(row[column]).strip():
                problems.append(f"{source}: row {number}: column {column!r} is empty")
    if problems:
        raise DataError("\n".join(problems))
    return [{column: str(row[column]).strip() for column in columns} for row in rows]


def find_duplicates(rows, key):
    seen, duplicates = {}, []
    for number, row in enumerate(rows, start=1):
        value = row[key].casefold()
        if value in seen:
            duplicates.append((number, seen[value]))
        else:
            seen[value] = number
    return duplicates


def token_lengths(rows, task, model_dir):
    if not (model_dir / "tokenizer_config.json").is_file() and not (model_dir / "tokenizer.json").is_file():
        return None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    texts = [task.template.format(**row) for row in rows]
    return [len(ids) + 2 for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]  # + bos, eos


def split(rows, eval_ratio, seed):
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    eval_count = max(1, round(len(rows) * eval_ratio))
    if eval_count >= len(rows):
        raise DataError(f"--eval-ratio {eval_ratio} leaves no training rows for {len(rows)} rows")
    held_out = set(order[:eval_count])
    train = [rows[i] for i in order if i not in held_out]
    evaluation = [rows[i] for i in order if i in held_out]
    return train, evaluation


def write_together(outputs):
    """Write every file to a temporary sibling first, then move all into place."""
    staged = []
    try:
        for path, rows in outputs:
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(rows, stream, indent=2, ensure_ascii=False)
                stream.write("\n")
            staged.append((temporary, path))
        for temporary, path in staged:
            os.replace(temporary, path)
    finally:
        for temporary, _ in staged:
            if os.path.exists(temporary):
                os.remove(temporary)


def prepare(source, eval_ratio, seed):
    config = load_olive_config()
    task = Task.from_olive_config(config)
    source = Path(source)
    if source.resolve() in (TRAIN.resolve(), EVAL.resolve()):
        raise DataError(f"{source} is one of the outputs; keep your raw file elsewhere (e.g. datasets/raw/)")
    rows = check_rows(source, read_rows(source), [task.input_column, task.output_column])
    report = [f"{source}: {len(rows)} rows, columns {task.input_column!r} -> {task.output_column!r}"]
    for number, first in find_duplicates(rows, task.input_column):
        report.append(f"duplicate: row {number} repeats row {first} ({task.input_column!r}); both kept")
    max_seq_len = config["data_configs"][0]["pre_process_data_config"].get("max_seq_len")
    lengths = token_lengths(rows, task, base_model_dir(config))
    if lengths is None:
        report.append("token lengths not checked: the base model's tokenizer is not in model-cache/ yet")
    else:
        for number, length in enumerate(lengths, start=1):
            if max_seq_len and length > max_seq_len:
                report.append(f"too long: row {number} is {length} tokens > max_seq_len {max_seq_len}; it will be cut")
    train, evaluation = split(rows, eval_ratio, seed)
    write_together([(TRAIN, train), (EVAL, evaluation)])
    report.append(f"wrote {TRAIN} ({len(train)} rows) and {EVAL} ({len(evaluation)} rows), seed {seed}")
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description="Check a dataset and split it into train.json and eval.json.")
    parser.add_argument("source", help="CSV, JSON (array of objects) or JSON Lines file")
    parser.add_argument("--eval-ratio", type=float, default=0.2, help="fraction held out for eval (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    args = parser.parse_args(argv)
    if not 0 < args.eval_ratio < 1:
        print("ERROR: --eval-ratio must be between 0 and 1", file=sys.stderr)
        return 2
    try:
        for line in prepare(args.source, args.eval_ratio, args.seed):
            print(line)
    except (DataError, TaskError) as error:
        for line in str(error).splitlines():
            print(f"ERROR: {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
