"""Bring your own data: check a file and split it into the project's training, validation and held-out files.

Run from the project root:
    python datasets/prepare.py SOURCE [--eval-ratio 0.2] [--seed 0]
    python datasets/prepare.py SOURCE --to messages --system-prompt TEXT [--columns INPUT ANSWER]

- Columns projects read CSV, TSV, JSON arrays or JSON Lines with the two columns of the text
  template in fine-tuning/olive-config.json; chat projects read JSON Lines conversations
  (`{"messages": [...]}`), or, with --to messages, a columns file turned into conversations
  (system prompt, the input as the user turn, the answer as the assistant turn).
- Every bad row is reported with file, row or line and what is wrong; duplicates and rows
  longer than max_seq_len tokens (counted with the base model's tokenizer when it is in
  model-cache/) are reported too.
- The split is deterministic for a given seed: first the held-out eval rows (--eval-ratio), then
  a tenth of the rest (at most 200) as validation rows, scored during training to keep the best
  checkpoint; the remainder is trained on. SOURCE is only read; the three outputs are written
  together, only after every check passed, so a failure leaves your files as they were.
- It prints what training will cost: rows, steps and epochs by the schedule in
  fine-tuning/olive-config.json, and for a model measured here, the time on a 2-core CPU.
"""

import argparse
import json
import random
from pathlib import Path

from slm.data import check_rows, read_records, write_together
from slm.errors import UserError, cli
from slm.footprint import check_fits
from slm.project import Project
from slm.prompts import ColumnsTask
from slm.schedule import Schedule, estimated_seconds, validation_count


def split(rows, eval_ratio, seed):
    """(training, validation, held-out eval) rows: eval first, then validation out of the rest."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    eval_count = max(1, round(len(rows) * eval_ratio))
    if eval_count >= len(rows):
        raise UserError(f"--eval-ratio {eval_ratio} leaves no training rows for {len(rows)} rows")
    held_out = set(order[:eval_count])
    rest = [i for i in order if i not in held_out]
    validation = set(rest[: validation_count(len(rest))])
    return (
        [rows[i] for i in rest if i not in validation],
        [rows[i] for i in rest if i in validation],
        [rows[i] for i in order if i in held_out],
    )


def schedule_report(project, train_rows):
    """What training on these rows will cost, by the schedule olive run applies."""
    settings = project.schedule_settings
    if settings is None:
        fixed = project.training_args.get("max_steps")
        return f"schedule: no epochs key in the training data's pre-processing: {fixed or 'one pass over the rows'}"
    schedule = Schedule(train_rows, project.batch_size, **settings, fixed_steps=project.training_args.get("max_steps"))
    line = f"schedule: {schedule.describe()}"
    seconds = estimated_seconds(project.base_model_dir.name, schedule)
    if seconds is not None:
        line += f"; about {seconds / 60:.0f} min of training on a 2-core CPU"
    expected = check_fits(project)
    return line + (f"\n{expected.describe()}" if expected else "")


def duplicate_key(row, task):
    if task.data_format == "messages":
        return json.dumps([m["content"].casefold() for m in row[task.message_col] if m["role"] != "assistant"])
    return row[task.input_column].casefold()


def find_duplicates(rows, task):
    seen, duplicates = {}, []
    for number, row in enumerate(rows, start=1):
        key = duplicate_key(row, task)
        if key in seen:
            duplicates.append((number, seen[key]))
        else:
            seen[key] = number
    return duplicates


def token_lengths(rows, task, model_dir):
    if not (model_dir / "tokenizer_config.json").is_file() and not (model_dir / "tokenizer.json").is_file():
        return None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    texts = [task.training_text(row, tokenizer)[0] for row in rows]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def columns_as_messages(records, columns, system_prompt, source):
    """(place, row) records of a columns file -> conversations: system prompt, input as user, answer as assistant."""
    if columns is None:
        keys = {tuple(row) for _, row in records if isinstance(row, dict)}
        if len(keys) != 1 or len(next(iter(keys))) != 2:
            raise UserError(f"{source}: say which columns are the input and the answer: --columns INPUT ANSWER")
        columns = next(iter(keys))
    rows = check_rows(source, records, ColumnsTask("", *columns))
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [
        (
            f"row {number}",
            {
                "messages": [
                    *system,
                    {"role": "user", "content": row[columns[0]]},
                    {"role": "assistant", "content": row[columns[1]]},
                ]
            },
        )
        for number, row in enumerate(rows, start=1)
    ]


def prepare(project, source, eval_ratio, seed, to=None, system_prompt=None, columns=None):
    check_fits(project)  # before anything is read or written: a run this machine cannot hold is refused
    task = project.task
    source = Path(source)
    outputs = (project.train_file, project.validation_file, project.eval_file)
    if source.resolve() in {path.resolve() for path in outputs}:
        raise UserError(f"{source.as_posix()} is one of the outputs; keep your raw file elsewhere (e.g. datasets/raw/)")
    records = read_records(source)
    if to == "messages":
        if task.data_format != "messages":
            raise UserError("--to messages is for chat-format projects; this project trains on columns")
        records = columns_as_messages(records, columns, system_prompt, source.as_posix())
    rows = check_rows(source, records, task)
    shape = (
        "conversations"
        if task.data_format == "messages"
        else f"columns {task.input_column!r} -> {task.output_column!r}"
    )
    report = [f"{source.as_posix()}: {len(rows)} rows, {shape}"]
    for number, first in find_duplicates(rows, task):
        report.append(f"duplicate: row {number} repeats row {first}; both kept")
    lengths = token_lengths(rows, task, project.base_model_dir)
    if lengths is None:
        report.append("token lengths not checked: the base model's tokenizer is not in model-cache/ yet")
    else:
        for number, length in enumerate(lengths, start=1):
            if project.max_seq_len and length > project.max_seq_len:
                report.append(
                    f"too long: row {number} is {length} tokens > max_seq_len {project.max_seq_len}; it will be cut"
                )
    train, validation, evaluation = split(rows, eval_ratio, seed)
    write_together([(outputs[0], train), (outputs[1], validation), (outputs[2], evaluation)])
    report.append(
        f"wrote {outputs[0].as_posix()} ({len(train)} rows), {outputs[1].as_posix()} ({len(validation)} rows) "
        f"and {outputs[2].as_posix()} ({len(evaluation)} rows), seed {seed}"
    )
    project.record_data_version()
    report.append(schedule_report(project, len(train)))
    return report


@cli
def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Check a dataset and split it into the training, validation and held-out files."
    )
    parser.add_argument("source", help="CSV, TSV, JSON (array of objects) or JSON Lines file")
    parser.add_argument("--eval-ratio", type=float, default=0.2, help="fraction held out for eval (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    parser.add_argument("--to", choices=["messages"], help="turn a columns file into chat conversations")
    parser.add_argument("--system-prompt", help="with --to messages: the system turn of every conversation")
    parser.add_argument("--columns", nargs=2, metavar=("INPUT", "ANSWER"), help="with --to messages: the two columns")
    args = parser.parse_args(argv)
    if not 0 < args.eval_ratio < 1:
        raise UserError("--eval-ratio must be between 0 and 1")
    for line in prepare(
        Project.load(), args.source, args.eval_ratio, args.seed, args.to, args.system_prompt, args.columns
    ):
        print(line)
    return 0
