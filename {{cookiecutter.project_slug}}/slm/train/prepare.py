"""Bring your own data: check a file and split it into the project's training, validation and held-out files.

Run from the project root:
    python datasets/prepare.py SOURCE [--eval-ratio 0.2] [--seed 0] [--keep-duplicates] [--strict]
    python datasets/prepare.py SOURCE --to messages --system-prompt TEXT [--columns INPUT ANSWER]

- Columns projects read CSV, TSV, JSON arrays or JSON Lines with the two columns of the text
  template in fine-tuning/olive-config.json; chat projects read JSON Lines conversations
  (`{"messages": [...]}`), or, with --to messages, a columns file turned into conversations
  (system prompt, the input as the user turn, the answer as the assistant turn).
- Every bad row is reported with file, row or line and what is wrong, and nothing is written.
- A data report, printed short and written to datasets/data-report.json (slm/train/data_report.py): rows that repeat
  an earlier row's input and answer (removed; --keep-duplicates keeps them), inputs with different answers
  (conflicts: kept and listed; --strict refuses the file), the label counts per split, labels with fewer than
  5 rows, and rows longer than max_seq_len tokens (counted with the base model's tokenizer when it is in
  model-cache/, else estimated).
- The split is deterministic for a given seed: first the held-out eval rows (--eval-ratio), then
  a tenth of the rest (at most 200) as validation rows, scored during training to keep the best
  checkpoint; the remainder is trained on. Rows with the same input go into the same file, and a
  small label set is split stratified (each label in proportion in each file). A file with too few
  distinct inputs to fill the three is refused. SOURCE is only read; the three outputs and the report
  are written together, only after every check passed, so a failure leaves your files as they were.
- It prints what training will cost: rows, steps and epochs by the schedule in
  fine-tuning/olive-config.json, and for a model measured here, the time on a 2-core CPU.
"""

import argparse
from pathlib import Path

from slm.data import check_rows, read_records, write_together
from slm.errors import UserError, cli
from slm.metrics import MAX_LABELS, label_set, short_answer
from slm.project import Project
from slm.prompts import ColumnsTask
from slm.train import data_report
from slm.train.footprint import check_fits
from slm.train.schedule import project_schedule, project_step_tokens


def schedule_report(project, schedule, expected):
    """What training will cost: the schedule olive run applies and `expected`, the forecast for these rows."""
    if schedule is None:
        fixed = project.training_args.get("max_steps")
        return f"schedule: no epochs key in the training data's pre-processing: {fixed or 'one pass over the rows'}"
    line = f"schedule: {schedule.describe()}"
    if expected is None:
        return line
    minutes = expected.seconds_per_step * schedule.steps / 60
    duration = f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} hours"
    return f"{line}; about {duration} of training on a 2-core CPU\n{expected.describe()}"


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


def length_findings(project, lengths, how, numbers, report_name):
    """(row numbers over max_seq_len, summary line or None)."""
    if not project.max_seq_len:
        return [], None
    too_long = [number for number, length in zip(numbers, lengths, strict=True) if length > project.max_seq_len]
    if not too_long:
        return [], f"lengths: the longest row is {max(lengths)} {how}, within max_seq_len {project.max_seq_len}"
    return too_long, (
        f"too long: {len(too_long)} rows over max_seq_len {project.max_seq_len} (longest {max(lengths)} {how}): "
        f"rows {data_report.rows_text(too_long, report_name)}; training cuts them at max_seq_len and drops a row "
        f"whose answer starts past it: shorten or drop these rows, or raise max_seq_len (in both data_configs' "
        f"pre_process_data_config of {project.config_path.as_posix()}; longer rows cost memory and time)"
    )


def label_findings(references, numbers, counts, report_name):
    """Summary lines on the labels: their counts per split, the rare ones, answers that keep them from being labels."""
    labels, seen_once = data_report.answer_labels(references)
    if labels is None:
        distinct = {reference.strip() for reference in references}
        if not seen_once and len(distinct) > MAX_LABELS and all(map(short_answer, distinct)):
            return [
                f"answers: {len(distinct)} distinct short answers, more than the {MAX_LABELS} a label set has, so "
                "free text (scored by token F1; the split is not stratified, rare labels not named): merge them "
                f"into {MAX_LABELS} labels or fewer to be scored by accuracy"
            ]
        if not seen_once:
            return ["answers: free text (scored by token F1; the split is not stratified)"]
        rows = [number for number, reference in zip(numbers, references, strict=True) if reference in seen_once]
        rows = data_report.rows_text(rows, report_name)
        return [
            f"answers: {', '.join(map(repr, seen_once))} appear once each (rows {rows}), "
            "so the answers count as free text (token F1, no stratified split), not labels: fix these rows, drop "
            "them or add rows of their label"
        ]
    per_label = ", ".join(f"{label} {'/'.join(str(n) for n in counts[label].values())}" for label in labels)
    lines = [f"labels (train/validation/eval rows), split stratified: {per_label}"]
    rare = [label for label in labels if sum(counts[label].values()) < data_report.RARE_LABEL_ROWS]
    if rare:
        lines.append(
            f"rare labels (fewer than {data_report.RARE_LABEL_ROWS} rows): "
            + ", ".join(f"{label} ({sum(counts[label].values())})" for label in rare)
            + ": too few to learn and to score; add rows of them, or merge them into another label"
        )
    held_out = [label for label in labels for _ in range(counts[label]["eval"])]
    if held_out and label_set(held_out) is None:
        once = [label for label in labels if counts[label]["eval"] == 1]
        lines.append(
            f"eval: {', '.join(once)} held out once only, so infer.py --eval scores the held-out rows by token F1, "
            "not accuracy (every label seen twice or never): add rows of these labels"
        )
    return lines


def repeat_findings(repeats, report_name):
    """Summary lines on the exact repeats and the conflicts."""
    lines = []
    if repeats.removed:
        lines.append(
            "repeats removed (the input and answer of an earlier row): rows "
            f"{data_report.rows_text([row for row, _ in repeats.removed], report_name)} (--keep-duplicates keeps them)"
        )
    if repeats.conflicts:
        shown = "; ".join(", ".join(map(str, group)) for group in repeats.conflicts[: data_report.SHOWN_ROWS])
        more = f"; ... ({len(repeats.conflicts) - data_report.SHOWN_ROWS} more in {report_name})"
        lines.append(
            f"conflicts (one input, different answers; kept): rows {shown}"
            f"{more if len(repeats.conflicts) > data_report.SHOWN_ROWS else ''}: give each input one answer or drop "
            "the wrong rows (--strict refuses the file)"
        )
    return lines


def prepare(
    project, source, eval_ratio, seed, to=None, system_prompt=None, columns=None, keep_duplicates=False, strict=False
):
    check_fits(project)  # before anything is read or written: a run this machine cannot hold is refused
    task = project.task
    source = Path(source)
    outputs = (project.train_file, project.validation_file, project.eval_file)
    report_file = project.data_report_file
    if source.resolve() in {path.resolve() for path in (*outputs, report_file)}:
        raise UserError(f"{source.as_posix()} is one of the outputs; keep your raw file elsewhere (e.g. datasets/raw/)")
    records = read_records(source)
    if to == "messages":
        if task.data_format != "messages":
            raise UserError("--to messages is for chat-format projects; this project trains on columns")
        records = columns_as_messages(records, columns, system_prompt, source.as_posix())
    rows = check_rows(source, records, task)
    report_name = report_file.as_posix()
    repeats = data_report.find_repeats(rows, task, keep_duplicates)
    if strict and repeats.conflicts:
        data_report.refuse_conflicts(source.as_posix(), repeats.conflicts, report_name)
    kept = [rows[index] for index in repeats.kept]
    numbers = [index + 1 for index in repeats.kept]
    references = [task.reference(row).strip() for row in kept]
    labels = data_report.answer_labels(references)[0]
    splits = data_report.split_rows(kept, task, labels and references, eval_ratio, seed, project.batch_size, source)
    lengths, how = data_report.row_lengths(project, kept)
    too_long, length_line = length_findings(project, lengths, how, numbers, report_name)
    counts = data_report.label_counts(kept, task, splits, labels)
    report = {
        "rows": len(rows),
        "kept": len(kept),
        "duplicates_removed": [list(pair) for pair in repeats.removed],
        "conflicts": repeats.conflicts,
        "too_long": too_long,
        "labels": counts,
        "splits": dict(zip(data_report.SPLITS, map(len, splits), strict=True)),
    }
    shape = (
        "conversations"
        if task.data_format == "messages"
        else f"columns {task.input_column!r} -> {task.output_column!r}"
    )
    summary = [f"{source.as_posix()}: {len(rows)} rows, {shape}", *repeat_findings(repeats, report_name)]
    summary += label_findings(references, numbers, counts, report_name)
    if length_line:
        summary.append(length_line)
    train, validation, evaluation = ([kept[index] for index in indices] for indices in splits)
    schedule = project_schedule(project, len(train))
    # the same refusal for steps of these rows (long rows make a step, and its memory, larger), before any write
    expected = check_fits(project, step_tokens=project_step_tokens(project, schedule, [lengths[i] for i in splits[0]]))
    write_together([(outputs[0], train), (outputs[1], validation), (outputs[2], evaluation), (report_file, report)])
    summary.append(
        f"wrote {outputs[0].as_posix()} ({len(train)} rows), {outputs[1].as_posix()} ({len(validation)} rows) "
        f"and {outputs[2].as_posix()} ({len(evaluation)} rows), seed {seed}; no input is in two of them; "
        f"the report: {report_name}"
    )
    project.record_data_version()
    summary.append(schedule_report(project, schedule, expected))
    return summary


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
    parser.add_argument(
        "--keep-duplicates", action="store_true", help="keep rows that repeat an earlier row (input and answer)"
    )
    parser.add_argument("--strict", action="store_true", help="refuse a file where one input has different answers")
    args = parser.parse_args(argv)
    if not 0 < args.eval_ratio < 1:
        raise UserError("--eval-ratio must be between 0 and 1")
    for line in prepare(
        Project.load(),
        args.source,
        args.eval_ratio,
        args.seed,
        args.to,
        args.system_prompt,
        args.columns,
        args.keep_duplicates,
        args.strict,
    ):
        print(line)
    return 0
