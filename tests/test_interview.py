"""The interview as a user meets it: the questions asked, overrides without prompts, answers of older versions."""

import json
import re
import subprocess
import sys

import pytest
from conftest import CONTEXT, OFFLINE, TEMPLATE
from cookiecutter.main import cookiecutter

MAX_QUESTIONS = 12
# the interview prints "[n/total]" before each question (and "Choose from [1/2]" after a choice's options)
QUESTION = re.compile(r"(?<!from )\[(\d+)/(\d+)\]")


def _answers_in_order():
    return [name for name in CONTEXT if not name.startswith("_")]


def test_pressing_enter_through_the_interview_asks_at_most_12_questions(tmp_path):
    """Drive the real interactive interview (not --no-input): Enter everywhere, "no" to setting up now."""
    names = _answers_in_order()
    replies = ["2" if name == "install_dependencies" else "" for name in names]
    interactive = subprocess.run(
        [sys.executable, "-m", "cookiecutter", str(TEMPLATE), "-o", str(tmp_path / "asked")],
        input="\n".join(replies) + "\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert interactive.returncode == 0, interactive.stdout[-2000:] + interactive.stderr[-2000:]
    asked = QUESTION.findall(interactive.stdout)
    assert len(asked) == len(names) <= MAX_QUESTIONS, interactive.stdout
    assert {total for _, total in asked} == {str(len(names))}
    # ... and yields the same project as the defaults without questions
    cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(tmp_path / "defaults"), extra_context=OFFLINE)
    asked_project = tmp_path / "asked/phi-3-tone-classifier"
    default_project = tmp_path / "defaults/phi-3-tone-classifier"
    files = sorted(p.relative_to(default_project) for p in default_project.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(asked_project) for p in asked_project.rglob("*") if p.is_file())
    for name in files:
        assert (asked_project / name).read_bytes() == (default_project / name).read_bytes(), name


def test_no_multi_line_defaults_and_every_question_says_what_it_changes():
    prompts = CONTEXT["__prompts__"]
    for name in _answers_in_order():
        default = CONTEXT[name][0] if isinstance(CONTEXT[name], list) else CONTEXT[name]
        assert "\n" not in default, name
        assert name in prompts, f"{name} has no question text"
        texts = [prompts[name]] if isinstance(prompts[name], str) else list(prompts[name].values())
        assert not [text for text in texts if "[" in text], f"{name}: rich would read [...] as markup"


def _config_file(tmp_path, context):
    import yaml

    path = tmp_path / "user-config.yaml"
    path.write_text(yaml.safe_dump({"default_context": context}))
    return path


def test_training_settings_are_overridable_on_the_command_line_and_in_a_config_file(tmp_path):
    command = [sys.executable, "-m", "cookiecutter", "--no-input", str(TEMPLATE), "-o"]
    flags = ["install_dependencies=no"]
    by_flag = subprocess.run([*command, str(tmp_path / "flag"), *flags, "__learning_rate=0.0005"], capture_output=True)
    assert by_flag.returncode == 0, by_flag.stderr
    config_file = _config_file(tmp_path, {"__max_steps": "42", "install_dependencies": "no"})
    by_file = subprocess.run([*command, str(tmp_path / "file"), "--config-file", str(config_file)], capture_output=True)
    assert by_file.returncode == 0, by_file.stderr

    def training_args(folder):
        config = json.loads((folder / "phi-3-tone-classifier/fine-tuning/olive-config.json").read_text())
        return config["passes"]["finetune"]["config"]["training_args"]

    assert training_args(tmp_path / "flag")["learning_rate"] == 0.0005
    assert training_args(tmp_path / "file")["max_steps"] == 42


def _old_replay(tmp_path, **changes):
    """A replay file as the previous template version wrote it (30 questions)."""
    answers = {
        "project_name": "Old Project",
        "project_slug": "old-project",
        "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "local_model_path": "",
        "finetune_method": "lora",
        "device": "cpu",
        "precision": "int4",
        "input_column": "sentence",
        "output_column": "label",
        "text_template": "Sentence: {sentence}\nLabel: {label}",
        "lora_r": "8",
        "lora_alpha": "16",
        "max_steps": "90",
        "learning_rate": "0.001",
        "max_seq_len": "128",
        "batch_size": "4",
        "download_model": "no",
        "install_dependencies": "no",
        "compute": "local",
        "olive_telemetry": "no",
        "__model_dir": "model-cache/SmolLM2-135M-Instruct",
        **changes,
    }
    path = tmp_path / "old-project.json"
    path.write_text(json.dumps({"cookiecutter": answers}))
    return path


def _replay(tmp_path, replay_file):
    """`cookiecutter --replay-file` as a user runs it; Enter answers the questions the old file lacks (data_format)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            "--replay-file",
            str(replay_file),
            str(TEMPLATE),
            "-o",
            str(tmp_path / "out"),
        ],
        input="\n" * 5,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_an_old_replay_file_keeps_its_answers(tmp_path):
    result = _replay(tmp_path, _old_replay(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    project = tmp_path / "out/old-project"
    config = json.loads((project / "fine-tuning/olive-config.json").read_text())
    finetune = config["passes"]["finetune"]["config"]
    assert (finetune["r"], finetune["alpha"]) == (8, 16.0)
    assert finetune["training_args"]["learning_rate"] == 0.001 and finetune["training_args"]["max_steps"] == 90
    assert (
        config["data_configs"][0]["pre_process_data_config"]["text_template"] == "Sentence: {sentence}\nLabel: {label}"
    )
    assert set(json.loads((project / "datasets/train.json").read_text())[0]) == {"sentence", "label"}


def test_an_old_replay_file_keeps_its_telemetry_answer(tmp_path):
    """olive_telemetry is no longer asked (it is the __olive_telemetry setting): an old "yes" still holds."""
    result = _replay(tmp_path, _old_replay(tmp_path, olive_telemetry="yes"))
    assert result.returncode == 0, result.stderr[-2000:]
    tasks = json.loads((tmp_path / "out/old-project/.vscode/tasks.json").read_text())
    assert tasks["options"]["env"] == {}  # with "no" (the default): {"OLIVE_DISABLE_TELEMETRY": "1"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param(
            {"azure_workspace": "ws"}, "azure_workspace is no longer asked", id="azure-answer-moved-to-submit-time"
        ),
        pytest.param(
            {"input_column": "text"}, "input_column='text' is now taken from text_template", id="column-mismatch"
        ),
    ],
)
def test_an_old_replay_answer_that_moved_is_refused_with_what_replaced_it(tmp_path, changes, message):
    result = _replay(tmp_path, _old_replay(tmp_path, **changes))
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert not (tmp_path / "out/old-project").exists()
