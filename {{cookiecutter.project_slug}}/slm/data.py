"""Reading and checking data rows, in both formats: the one reader behind prepare, eval and benchmark.

- columns: CSV, TSV, a JSON array of objects, or JSON Lines; every row has a non-empty text,
  number or boolean in the input and the answer column (not a nested object or list).
- messages: JSON Lines of {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}]};
  every conversation has an assistant turn and ends with one (the answer that is learned
  and scored).

Every problem is reported with file, row or line, and what is wrong, not just the first.
"""

import csv
import io
import json
import os
import tempfile
from pathlib import Path

from slm.errors import UserError

ROLES = ("system", "user", "assistant")


class Unreadable(str):
    """A record that is not a row: a JSON Lines line that does not parse, a CSV or TSV row with another number of
    fields than its header. Reported with the other problems of its file."""


# how many problems one error shows before summing up the rest
MAX_SHOWN = 50


def read_records(path):
    """Rows of a CSV, JSON array or JSON Lines file, each with its place in the file ("row 3", "line 7")."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise UserError(f"{path.as_posix()}: not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    except FileNotFoundError:
        raise UserError(f"{path.as_posix()}: file not found") from None
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        # a quoted CSV field may hold newlines: the csv module reads the text as one stream. TSV files quote
        # nothing (a tab separates, a quote is text), as the tab-separated data sets of this field are written.
        # strict: a quote that opens a field and is never closed, or is closed and followed by more text, is an
        # error, not a field that silently swallows the rows after it
        dialect = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if suffix == ".tsv" else {}
        reader = csv.DictReader(io.StringIO(text, newline=""), strict=True, **dialect)
        if not reader.fieldnames:
            raise UserError(f"{path.as_posix()}: empty {suffix[1:].upper()}, expected a header row")
        records, row_start = [], reader.line_num + 1
        try:
            for row in reader:
                records.append((f"row {len(records) + 1}", _fields_problem(row, reader.fieldnames, suffix) or row))
                row_start = reader.line_num + 1
        except csv.Error as error:
            raise UserError(
                f"{path.as_posix()}: row {len(records) + 1} (file lines {row_start}-{reader.reader.line_num}): "
                f"{error}: a double quote opens a field there and nothing closes it before other text; close it, "
                'or write a quote inside a quoted field as two ("")'
            ) from None
        return records
    if suffix in (".jsonl", ".ndjson"):
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append((f"line {number}", json.loads(line)))
                except json.JSONDecodeError as error:
                    records.append((f"line {number}", Unreadable(f"not valid JSON ({error.msg})")))
        return records
    if suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as error:
            raise UserError(f"{path.as_posix()}: not valid JSON ({error.msg} at line {error.lineno})") from None
        if not isinstance(rows, list):
            raise UserError(f"{path.as_posix()}: expected a JSON array of objects (a table), got {type(rows).__name__}")
        return [(f"row {number}", row) for number, row in enumerate(rows, start=1)]
    raise UserError(f"{path.as_posix()}: unknown format {suffix!r}; use .csv, .tsv, .json (array) or .jsonl")


def _fields_problem(row, header, suffix):
    """A CSV or TSV row with more fields than its header (DictReader keeps the extra ones under None) or fewer
    (their values None), as a problem to report; None if it fits."""
    count = len(header) + len(row.get(None, [])) - sum(row[column] is None for column in header)
    if count == len(header):
        return None
    found = f"{count} field{'s' if count != 1 else ''} where the header has {len(header)}"
    if count > len(header):
        separator = "a tab" if suffix == ".tsv" else 'a comma: put that field in double quotes ("like, this")'
        return Unreadable(f"{found}: a field holds {separator}")
    return Unreadable(f"{found}: add the missing fields (an empty one is still written: a,,c)")


def _raise_if(problems):
    if problems:
        shown = problems[:MAX_SHOWN]
        if len(problems) > MAX_SHOWN:
            shown.append(f"... and {len(problems) - MAX_SHOWN} more problems")
        raise UserError("\n".join(shown))


def columns_problems(place, row, columns):
    if not isinstance(row, dict):
        return [f"{place}: not an object with columns (a table row)"]
    problems = []
    for column in columns:
        if column not in row:
            problems.append(f"{place}: column {column!r} is missing")
        elif isinstance(row[column], dict | list):
            problems.append(
                f"{place}: column {column!r} holds a JSON {'object' if isinstance(row[column], dict) else 'list'}, "
                "not text; flatten it to one text value per column"
            )
        elif row[column] is None or not str(row[column]).strip():
            problems.append(f"{place}: column {column!r} is empty")
    return problems


def messages_problems(place, row, message_col="messages"):
    if not isinstance(row, dict) or not isinstance(row.get(message_col), list) or not row[message_col]:
        return [f'{place}: no {message_col!r} list (expected {{"{message_col}": [{{"role": ..., "content": ...}}]}})']
    problems = []
    messages = row[message_col]
    for number, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            problems.append(f"{place}: message {number} is not an object with role and content")
            continue
        if message.get("role") not in ROLES:
            problems.append(
                f"{place}: message {number} has unknown role {message.get('role')!r}; use one of {list(ROLES)}"
            )
        content = message.get("content")
        if not isinstance(content, str):
            problems.append(f"{place}: message {number} content must be a string, got {type(content).__name__}")
        elif not content.strip():
            problems.append(f"{place}: message {number} content is empty")
    roles = [message.get("role") for message in messages if isinstance(message, dict)]
    if "assistant" not in roles:
        problems.append(f"{place}: no assistant turn (the answer the model learns)")
    elif roles[-1] != "assistant":
        problems.append(f"{place}: the last turn must be the assistant's answer, not {roles[-1]!r}")
    return problems


def check_rows(path, records, task):
    """Validate (place, row) records for the task's data format; return the rows or raise with every problem."""
    if not records:
        raise UserError(f"{Path(path).as_posix()}: no rows")
    problems = []
    for place, row in records:
        where = f"{Path(path).as_posix()}: {place}"
        if isinstance(row, Unreadable):
            problems.append(f"{where}: {row}")
        elif task.data_format == "messages":
            problems += messages_problems(where, row, task.message_col)
        else:
            problems += columns_problems(where, row, task.columns)
    _raise_if(problems)
    if task.data_format == "messages":
        return [{task.message_col: row[task.message_col]} for _, row in records]
    return [{column: str(row[column]).strip() for column in task.columns} for _, row in records]


def load_rows(path, task):
    return check_rows(path, read_records(path), task)


def write_together(outputs):
    """Write every (path, rows) to a temporary sibling first, then move all into place."""
    staged = []
    try:
        for path, rows in outputs:
            path = Path(path)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
                if path.suffix == ".jsonl":
                    stream.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
                else:
                    json.dump(rows, stream, indent=2, ensure_ascii=False)
                    stream.write("\n")
            staged.append((temporary, path))
        for temporary, path in staged:
            os.replace(temporary, path)
    finally:
        for temporary, _ in staged:
            if os.path.exists(temporary):
                os.remove(temporary)
