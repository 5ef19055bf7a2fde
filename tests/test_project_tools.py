"""The generated project as a VS Code workspace, its data preparation, and its own checks."""

import json
import re

import pytest
from conftest import DEMO_MODEL

STEP_SCRIPT = re.compile(r"^[\w./-]+\.(py|json)$")


def _referenced_files(document):
    """Project files named in tasks/launch configurations (args and programs)."""
    found = []
    for entry in document.get("tasks", []) + document.get("configurations", []):
        candidates = list(entry.get("args", [])) + [entry.get("program", "")]
        for value in candidates:
            value = value.replace("${workspaceFolder}/", "")
            if STEP_SCRIPT.match(value):
                found.append(value)
    return found


@pytest.mark.parametrize("telemetry", ["no", "yes"])
def test_vscode_workspace_parses_and_points_at_real_files(bake, telemetry):
    project = bake(__olive_telemetry=telemetry)
    tasks = project.read_json(".vscode/tasks.json")
    launch = project.read_json(".vscode/launch.json")
    project.read_json(".vscode/extensions.json")
    project.read_json(".vscode/settings.json")
    for task in tasks["tasks"][1:]:  # after step 1 every task runs .venv's python, on every OS
        assert task["command"].endswith(".venv/bin/python"), task
        assert task["windows"]["command"].endswith(".venv\\Scripts\\python.exe"), task
    referenced = _referenced_files(tasks) + _referenced_files(launch)
    assert {
        "setup/install.py",
        "setup/get_model.py",
        "datasets/prepare.py",
        "fine-tuning/olive-config.json",
        "inferences/infer.py",
        "inferences/benchmark.py",
    } <= set(referenced)
    for path in referenced:
        assert (project.path / path).is_file(), path
    labels = [task["label"] for task in tasks["tasks"]]
    numbers = [int(label.split(".")[0]) for label in labels if label[0].isdigit()]
    assert numbers == list(range(1, len(numbers) + 1))  # the README's steps, in order
    env = tasks["options"]["env"]
    assert env == ({"OLIVE_DISABLE_TELEMETRY": "1"} if telemetry == "no" else {})


def test_answers_are_recorded_for_replay(bake):
    project = bake(__lora_r="8", finetune_method="qlora")
    answers = project.read_json(".cookiecutter.json")["cookiecutter"]
    assert answers["__lora_r"] == "8" and answers["finetune_method"] == "qlora"
    assert not [key for key in answers if key.startswith("_") and not key.startswith("__")]


def test_replay_file_renders_the_same_project(bake, tmp_path):
    from conftest import TEMPLATE
    from cookiecutter.main import cookiecutter

    project = bake(__lora_r="8", project_slug="replayed", data_format="messages")
    cookiecutter(str(TEMPLATE), replay=str(project.path / ".cookiecutter.json"), output_dir=str(tmp_path))
    for name in ("fine-tuning/olive-config.json", "setup/requirements.txt", ".vscode/tasks.json", "README.md"):
        assert (project.path / name).read_text() == (tmp_path / "replayed" / name).read_text(), name


ROWS = [{"phrase": f"sentence number {i} about something", "tone": ["joy", "fear"][i % 2]} for i in range(20)]


def _write(path, kind, rows):
    if kind == "csv":
        lines = ["phrase,tone"] + [f'"{row["phrase"]}",{row["tone"]}' for row in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif kind == "tsv":
        # quotes are text in a TSV file, as in the tab-separated data sets people publish
        lines = ["phrase\ttone"] + [f'{row["phrase"]} "quoted"\t{row["tone"]}' for row in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif kind == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    else:
        path.write_text(json.dumps(rows), encoding="utf-8")


SPLIT_FILES = ("datasets/train.json", "datasets/validation.json", "datasets/eval.json")


@pytest.mark.stack  # the strict config check needs Olive
@pytest.mark.parametrize("kind", ["csv", "tsv", "json", "jsonl"])
def test_prepare_splits_good_input_deterministically(bake, kind):
    project = bake(base_model=DEMO_MODEL)
    source = project.path / f"mine.{kind}"
    _write(source, kind, ROWS)
    before = source.read_bytes()
    result = project.run("datasets/prepare.py", source.name, "--eval-ratio", "0.25", "--seed", "3")
    assert result.returncode == 0, result.stderr
    train, validation, held_out = (project.read_json(name) for name in SPLIT_FILES)
    # 5 held out, then a tenth of the other 15 (rounded) for validation
    assert (len(train), len(validation), len(held_out)) == (13, 2, 5)
    expected = sorted(ROWS, key=lambda row: row["phrase"])
    if kind == "tsv":
        expected = [{**row, "phrase": row["phrase"] + ' "quoted"'} for row in expected]
    assert sorted(train + validation + held_out, key=lambda row: row["phrase"]) == expected  # none overlap
    assert source.read_bytes() == before  # the source is never modified
    # what training will cost, by the schedule olive run applies (SmolLM2: at least 100 steps of 8)
    assert "schedule: 13 training rows x 3 epochs / batch 8 = 100 steps (raised to min_steps 100)" in result.stdout
    assert "min of training on a 2-core CPU" in result.stdout
    assert "forecast on a 2-core CPU (" in result.stdout and "s per training step of 8 rows" in result.stdout
    again = project.run("datasets/prepare.py", source.name, "--eval-ratio", "0.25", "--seed", "3")
    assert again.returncode == 0 and [project.read_json(name) for name in SPLIT_FILES] == [train, validation, held_out]
    # the data's digest enters the config, so that Olive's cache (keyed on the config) sees new data
    pre_process = project.read_json("fine-tuning/olive-config.json")["data_configs"][0]["pre_process_data_config"]
    assert len(pre_process["data_version"]) == 16
    project.check_config()


def test_prepare_removes_repeats_and_reports_them(bake):
    project = bake()
    _write(project.path / "dup.json", "json", ROWS + [ROWS[3]])
    result = project.run("datasets/prepare.py", "dup.json")
    assert result.returncode == 0
    assert "repeats removed (the input and answer of an earlier row): rows 21 (" in result.stdout
    report = project.read_json("datasets/data-report.json")
    assert (report["rows"], report["kept"], report["duplicates_removed"]) == (21, 20, [[21, 4]])


BAD_INPUTS = [
    pytest.param(
        "missing.json",
        json.dumps([{"phrase": "a b c", "tone": "joy"}, {"phrase": "d e f"}]),
        "missing.json: row 2: column 'tone' is missing",
        id="missing-column",
    ),
    pytest.param(
        "empty.csv",
        "phrase,tone\nhello there,joy\n   ,fear\n",
        "empty.csv: row 2: column 'phrase' is empty",
        id="empty-value",
    ),
    pytest.param(
        "latin1.csv",
        "phrase,tone\ncaf\xe9 au lait,joy\n".encode("latin-1"),
        "latin1.csv: not UTF-8 text",
        id="bad-encoding",
    ),
    pytest.param(
        "object.json",
        json.dumps({"phrase": "x", "tone": "joy"}),
        "object.json: expected a JSON array of objects (a table), got dict",
        id="not-a-table",
    ),
    pytest.param(
        "scalars.json",
        json.dumps(["just", "strings"]),
        "scalars.json: row 1: not an object with columns (a table row)",
        id="not-rows",
    ),
    pytest.param(
        "nested.jsonl",
        '{"phrase": "ok", "tone": "joy"}\n{"phrase": {"text": "nested"}, "tone": "joy"}\n',
        "nested.jsonl: line 2: column 'phrase' holds a JSON object, not text",
        id="nested-value",
    ),
    pytest.param(
        "list.json",
        json.dumps([{"phrase": "a b c", "tone": ["joy", "fear"]}]),
        "list.json: row 1: column 'tone' holds a JSON list, not text",
        id="list-value",
    ),
    pytest.param(
        "broken.jsonl",
        '{"phrase": "ok", "tone": "joy"}\n{"phrase": \n',
        "broken.jsonl: line 2: not valid JSON",
        id="broken-jsonl",
    ),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_INPUTS)
def test_prepare_rejects_bad_input_and_writes_nothing(bake, name, content, message):
    project = bake()
    source = project.path / name
    source.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    before = {path: (project.path / path).read_bytes() for path in SPLIT_FILES}
    result = project.run("datasets/prepare.py", name)
    assert result.returncode == 1
    assert f"ERROR: {message}" in result.stderr, result.stderr
    for path, content_before in before.items():
        assert (project.path / path).read_bytes() == content_before
    assert not list((project.path / "datasets").glob(".*.json.*"))  # no staged leftovers
    assert not (project.path / "datasets/data-report.json").exists()


@pytest.mark.stack
def test_prepared_data_passes_the_checks_training_and_eval_use(bake):
    project = bake()
    _write(project.path / "mine.csv", "csv", ROWS)
    assert project.run("datasets/prepare.py", "mine.csv").returncode == 0
    project.check_config()
    data = project.module("slm.data")
    task = project.module("slm.project").Project.load(project.path / "fine-tuning/olive-config.json").task
    assert len(data.load_rows(project.path / "datasets/train.json", task)) == 14  # 16 less 2 for validation


SYSTEM = "Classify the tone."


def _conversation(user, answer, system=SYSTEM):
    turns = [{"role": "system", "content": system}] if system else []
    return {"messages": [*turns, {"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


CHAT_FILES = ("datasets/train.jsonl", "datasets/validation.jsonl", "datasets/eval.jsonl")
CHATS = [_conversation(f"sentence number {i} about something", ["joy", "fear"][i % 2]) for i in range(20)]
BAD_CHAT_LINES = [
    ('{"messages": [', "not valid JSON"),
    ('{"text": "hello"}', "no 'messages' list"),
    ('{"messages": [{"role": "bot", "content": "hi"}, {"role": "assistant", "content": "joy"}]}', "unknown role 'bot'"),
    ('{"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "joy"}]}', "content is empty"),
    ('{"messages": [{"role": "user", "content": 7}, {"role": "assistant", "content": "joy"}]}', "must be a string"),
    ('{"messages": [{"role": "user", "content": "hi"}]}', "no assistant turn"),
    (
        '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, '
        '{"role": "user", "content": "c"}]}',
        "the last turn must be the assistant's answer",
    ),
]


def test_prepare_chat_jsonl_reports_every_bad_line_and_writes_nothing(bake):
    project = bake(data_format="messages")
    source = project.path / "chats.jsonl"
    good = [json.dumps(row) for row in CHATS[:3]]
    source.write_text("\n".join([good[0], *[line for line, _ in BAD_CHAT_LINES], *good[1:]]) + "\n")
    before = {name: (project.path / name).read_bytes() for name in CHAT_FILES}
    result = project.run("datasets/prepare.py", "chats.jsonl")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR: chats.jsonl: line ")]
    assert len(errors) == len(BAD_CHAT_LINES), result.stderr
    for (_, message), number in zip(BAD_CHAT_LINES, range(2, 2 + len(BAD_CHAT_LINES)), strict=True):
        assert any(f"line {number}:" in error and message in error for error in errors), (message, errors)
    for name, content in before.items():
        assert (project.path / name).read_bytes() == content


def test_prepare_chat_jsonl_splits_deterministically(bake):
    project = bake(data_format="messages")
    (project.path / "chats.jsonl").write_text("".join(json.dumps(row) + "\n" for row in CHATS))
    first = project.run("datasets/prepare.py", "chats.jsonl", "--seed", "5")
    assert first.returncode == 0, first.stderr
    held_out = (project.path / "datasets/eval.jsonl").read_text()
    again = project.run("datasets/prepare.py", "chats.jsonl", "--seed", "5")
    assert again.returncode == 0 and (project.path / "datasets/eval.jsonl").read_text() == held_out
    rows = [json.loads(line) for name in CHAT_FILES for line in (project.path / name).open()]
    assert sorted(map(json.dumps, rows)) == sorted(map(json.dumps, CHATS)) and len(held_out.splitlines()) == 4


def test_prepare_turns_a_columns_file_into_conversations(bake):
    project = bake(data_format="messages")
    _write(project.path / "mine.csv", "csv", ROWS)
    result = project.run("datasets/prepare.py", "mine.csv", "--to", "messages", "--system-prompt", SYSTEM)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for name in CHAT_FILES for line in (project.path / name).open()]
    expected = [_conversation(row["phrase"], row["tone"]) for row in ROWS]
    assert sorted(map(json.dumps, rows)) == sorted(map(json.dumps, expected))


def test_prepare_to_messages_needs_a_chat_project(bake):
    project = bake()
    _write(project.path / "mine.csv", "csv", ROWS)
    result = project.run("datasets/prepare.py", "mine.csv", "--to", "messages", "--system-prompt", SYSTEM)
    assert result.returncode == 1 and "ERROR: --to messages is for chat-format projects" in result.stderr
