"""prepare.py's data report and split on planted faults, in a copy of this project (no model, no torch):
repeats removed, conflicts listed or refused, one input in one split, labels stratified, rare labels and
over-long rows named, too small a file refused with nothing written."""

import json
from pathlib import Path

import pytest

import slm.train.data_report
from slm.data import check_rows, load_rows, read_records
from slm.errors import UserError
from slm.project import OLIVE_CONFIG, Project
from slm.prompts import ColumnsTask
from slm.train.data_report import input_key, smallest_file
from slm.train.prepare import main

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("train", "validation", "eval")


@pytest.fixture
def project(tmp_path, monkeypatch):
    """This project's config in an empty folder (the sample data stays as it is), with no base model in it."""
    (tmp_path / "fine-tuning").mkdir()
    (tmp_path / "datasets").mkdir()
    config = json.loads((ROOT / OLIVE_CONFIG).read_text(encoding="utf-8"))
    config["input_model"]["model_path"] = "model-cache/base"
    (tmp_path / OLIVE_CONFIG).write_text(json.dumps(config), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return Project.load()


def row(project, text, answer):
    task = project.task
    if task.data_format == "messages":
        return {task.message_col: [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]}
    return {task.input_column: text, task.output_column: answer}


def labelled(project, sizes):
    """sizes: {label: rows}, each row with its own input."""
    return [row(project, f"{label} sentence number {i}", label) for label, n in sizes.items() for i in range(n)]


def prepared(project, rows, *options, capsys):
    """Run prepare.py on rows written as JSON Lines: (exit status, stdout, stderr, report or None, splits)."""
    source = "mine.jsonl"
    with open(source, "w", encoding="utf-8") as stream:
        stream.writelines(json.dumps(r) + "\n" for r in rows)
    status = main([source, *options])
    out, err = capsys.readouterr()
    report = project.data_report_file
    files = (project.train_file, project.validation_file, project.eval_file)
    splits = {name: load_rows(path, project.task) for name, path in zip(SPLITS, files, strict=True) if path.is_file()}
    return status, out, err, json.loads(report.read_text()) if report.is_file() else None, splits


def test_report_shape_and_exact_repeats_removed_once(project, capsys):
    rows = labelled(project, {"joy": 12, "fear": 12})
    rows += [rows[3], rows[20], rows[3]]  # rows 25, 26, 27 repeat rows 4, 21, 4
    status, out, _, report, splits = prepared(project, rows, capsys=capsys)
    assert status == 0
    assert set(report) == {"rows", "kept", "duplicates_removed", "conflicts", "too_long", "labels", "splits"}
    assert (report["rows"], report["kept"]) == (27, 24)
    assert report["duplicates_removed"] == [[25, 4], [26, 21], [27, 4]]
    assert report["conflicts"] == [] and report["too_long"] == []
    assert report["splits"] == {name: len(splits[name]) for name in SPLITS} and sum(report["splits"].values()) == 24
    assert set(report["labels"]) == {"joy", "fear"}
    assert all(set(counts) == set(SPLITS) for counts in report["labels"].values())
    assert "repeats removed (the input and answer of an earlier row): rows 25, 26, 27 (" in out
    _, _, _, kept, splits = prepared(project, rows, "--keep-duplicates", capsys=capsys)
    assert kept["duplicates_removed"] == [] and kept["kept"] == 27 == sum(map(len, splits.values()))


def test_conflicts_are_listed_and_kept_or_refused_with_strict(project, capsys):
    rows = labelled(project, {"joy": 12, "fear": 12})
    rows += [row(project, "JOY sentence number 2", "fear"), rows[2]]  # row 25 contradicts row 3, row 26 repeats it
    status, out, _, report, _ = prepared(project, rows, capsys=capsys)
    assert status == 0 and report["conflicts"] == [[3, 25, 26]] and report["duplicates_removed"] == [[26, 3]]
    assert "conflicts (one input, different answers; kept): rows 3, 25, 26:" in out
    assert "both kept" not in out
    before = {path: path.read_bytes() for path in project.data_report_file.parent.iterdir()}
    status, out, err, _, _ = prepared(project, rows, "--strict", capsys=capsys)
    assert status == 1 and out == ""
    assert [line for line in err.splitlines() if line.startswith("ERROR: ")] == err.splitlines()
    assert len(err.splitlines()) == 1 and "rows 3, 25, 26" in err
    assert {path: path.read_bytes() for path in before} == before  # nothing written


@pytest.mark.parametrize("options", [[], ["--keep-duplicates"]])
def test_identical_inputs_land_in_one_split(project, capsys, options):
    texts = [f"sentence number {i}" for i in range(30)]
    rows = [row(project, text, ["joy", "fear"][i % 2]) for i, text in enumerate(texts)]
    rows += [row(project, text.upper(), ["joy", "fear"][i % 2]) for i, text in enumerate(texts)]  # repeats
    rows += [row(project, text, "surprise") for text in texts[:10]]  # conflicts
    _, _, _, report, splits = prepared(project, rows, *options, capsys=capsys)
    assert report["conflicts"] == [[i + 1, i + 31, i + 61] for i in range(10)]
    assert report["kept"] == (70 if options else 40)
    keys = {name: {input_key(r, project.task) for r in splits[name]} for name in SPLITS}
    assert not keys["eval"] & (keys["train"] | keys["validation"]) and not keys["validation"] & keys["train"]


def test_an_input_that_differs_only_in_its_spacing_is_the_same_input(project, capsys):
    rows = labelled(project, {"joy": 12, "fear": 12})
    rows.append(row(project, " JOY  sentence\tnumber 3\n", "joy"))  # row 25: row 4 with other spaces
    _, _, _, report, _ = prepared(project, rows, capsys=capsys)
    assert report["duplicates_removed"] == [[25, 4]]
    _, _, _, report, splits = prepared(project, rows, "--keep-duplicates", capsys=capsys)
    key = input_key(rows[3], project.task)
    where = [name for name in SPLITS for r in splits[name] if input_key(r, project.task) == key]
    assert len(where) == 2 and len(set(where)) == 1, where  # never one copy trained on and the other held out


def test_labels_are_split_stratified_and_rare_ones_named(project, capsys):
    sizes = {"joy": 40, "fear": 20, "surprise": 10, "anger": 4, "calm": 3}
    rows = labelled(project, sizes)
    status, out, _, report, splits = prepared(project, rows, capsys=capsys)
    assert status == 0
    for label, n in sizes.items():
        counts = report["labels"][label]
        assert counts == {name: sum(project.task.reference(r) == label for r in splits[name]) for name in SPLITS}
        assert abs(counts["eval"] - n * 0.2) < 1, (label, counts)  # in proportion, to the row
        if n >= 10:
            assert min(counts.values()) >= 1, (label, counts)
    assert "rare labels (fewer than 5 rows): anger (4), calm (3)" in out
    again = prepared(project, rows, capsys=capsys)[4]
    assert again == splits  # deterministic for a seed
    other = prepared(project, rows, "--seed", "1", capsys=capsys)[4]
    assert other != splits


def test_an_answer_seen_once_is_named_and_free_text_gets_no_labels(project, capsys):
    rows = labelled(project, {"joy": 10, "fear": 10}) + [row(project, "a typo row", "jyo")]
    _, out, _, report, _ = prepared(project, rows, capsys=capsys)
    assert report["labels"] is None and "'jyo' appear once each (rows 21)" in out
    free = [row(project, f"question {i}", f"a long answer number {i} in words") for i in range(20)]
    _, out, _, report, _ = prepared(project, free, capsys=capsys)
    assert report["labels"] is None and "answers: free text" in out
    topics = labelled(project, {f"topic{i}": 3 for i in range(21)})  # one label more than a label set holds
    _, out, _, report, _ = prepared(project, topics, capsys=capsys)
    assert report["labels"] is None and "answers: 21 distinct short answers, more than the 20 a label set has" in out


class CharacterTokenizer:
    """One token per character: a tokenizer unlike the 4-characters-a-token estimate."""

    bos_token, eos_token = "<s>", "</s>"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt, chat_template=None):
        text = "".join(f"<{m['role']}>{m['content']}" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")

    def __call__(self, texts, add_special_tokens):
        return {"input_ids": [list(text) for text in texts]}


def test_rows_over_max_seq_len_are_listed_estimated_or_by_the_tokenizer(project, capsys, monkeypatch):
    limit = project.max_seq_len
    rows = labelled(project, {"joy": 10, "fear": 10})
    rows.insert(4, row(project, "word " * limit, "joy"))  # row 5: about 1.25 x the limit, estimated
    rows.insert(9, row(project, "w" * (2 * limit), "fear"))  # row 10: 2 x the limit in characters, half estimated
    _, out, _, report, _ = prepared(project, rows, capsys=capsys)
    assert report["too_long"] == [5]
    assert "estimated at 4 characters a token" in out and "raise max_seq_len" in out and "rows 5;" in out
    project.base_model_dir.mkdir(parents=True)
    (project.base_model_dir / "tokenizer.json").write_text("{}")
    monkeypatch.setattr(slm.train.data_report, "load_tokenizer", lambda folder: CharacterTokenizer())
    _, out, _, report, _ = prepared(project, rows, capsys=capsys)
    assert report["too_long"] == [5, 10] and "estimated" not in out


def test_too_small_a_file_is_refused_with_nothing_written(project, capsys):
    smallest = smallest_file(0.2, project.batch_size)
    for inputs in (1, 2, smallest - 1):
        rows = [row(project, f"sentence {i % inputs}", "joy") for i in range(40)]  # 40 rows, `inputs` distinct
        status, out, err, report, splits = prepared(project, rows, "--keep-duplicates", capsys=capsys)
        assert status == 1 and out == "" and report is None and splits == {}
        assert err == (
            f"ERROR: mine.jsonl: {inputs} distinct inputs are too few: a batch of {project.batch_size} to train on, "
            f"one to validate on and one held out to score take {smallest} with --eval-ratio 0.2: add rows "
            "(or lower --eval-ratio or training_args.per_device_train_batch_size)\n"
        )
    rows = [row(project, f"sentence {i}", "joy") for i in range(smallest)]
    status, _, _, report, _ = prepared(project, rows, capsys=capsys)
    assert status == 0 and report["splits"]["train"] >= project.batch_size and min(report["splits"].values()) >= 1


def test_the_floor_is_a_batch_to_train_on_and_one_row_for_each_other_split():
    assert smallest_file(0.2, 8) == 11  # 2 held out, 1 for validation, 8 to train on
    assert smallest_file(0.2, 4) == 6  # 1, 1, 4
    assert smallest_file(0.5, 8) == 17  # 8 (8.5 rounded to even), 1, 8
    assert smallest_file(0.9, 1) == 16  # 14, 1, 1: with fewer, the held-out share leaves no validation row


CSV_ROWS = [f"sentence {i},{['joy', 'fear'][i % 2]}" for i in range(1, 9)]


def csv_problem(tmp_path, lines, name="mine.csv", prefix=""):
    """The error check_rows gives for a file of these lines (CRLF ends), or None."""
    path = tmp_path / name
    path.write_bytes((prefix + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    try:
        rows = check_rows(path, read_records(path), ColumnsTask("", "text", "label"))
    except UserError as error:
        return str(error).replace(f"{path.as_posix()}: ", "")
    assert [r["text"] for r in rows][:2] == ["sentence 1", "sentence 2"] or "quoted" in rows[0]["text"]
    return None


def test_a_csv_row_broken_by_a_stray_comma_or_quote_is_named_by_its_row(tmp_path):
    def broken(row, text):
        return ["text,label", *CSV_ROWS[: row - 1], text, *CSV_ROWS[row:]]

    assert csv_problem(tmp_path, ["text,label", *CSV_ROWS], prefix="\ufeff") is None  # a BOM is no fault
    quoted = ["text,label", '"quoted, over\r\ntwo lines, with ""quotes""",joy', *CSV_ROWS]
    assert csv_problem(tmp_path, quoted) is None
    assert csv_problem(tmp_path, broken(3, "sentence 3, and more,joy")) == (
        'row 3: 3 fields where the header has 2: a field holds a comma: put that field in double quotes ("like, this")'
    )
    assert csv_problem(tmp_path, broken(4, "sentence 4")).startswith("row 4: 1 field where the header has 2: add")
    # a quote never closed: without strict reading, rows 5 to 8 became row 5's text and the file 5 rows long
    assert csv_problem(tmp_path, broken(5, '"sentence 5,fear')).startswith(
        "row 5 (file lines 6-9): unexpected end of data: a double quote opens a field there and nothing closes it"
    )
    # closed by the next quote in the file, rows later: without strict reading, rows 2 to 6 were one silent row
    lines = broken(2, '"sentence 2,fear')
    lines[6] = '"sentence 6",fear'
    assert csv_problem(tmp_path, lines).startswith("row 2 (file lines 3-7): ',' expected after '\"': a double quote")
    tsv = ["text\tlabel", *(line.replace(",", "\t") for line in CSV_ROWS)]
    tsv[2] = "sentence 2\tmore\tfear"
    assert csv_problem(tmp_path, tsv, "mine.tsv") == "row 2: 3 fields where the header has 2: a field holds a tab"
