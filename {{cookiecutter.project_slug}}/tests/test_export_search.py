"""The export search's score (slm/export/olive_eval.py) with stand-in engines, Olive's ranking of the candidates by it,
and the report of what was tried (slm/export/search_report.py)."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from slm.export import olive_eval, search_report
from slm.project import Project


class CharTokenizer:
    """One token per character, id 0 the end of sequence: enough for the prompts and the answers."""

    bos_token, eos_token, eos_token_id = "<s>", "</s>", 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(ch) for ch in text]}

    def decode(self, ids):
        return "".join(chr(i) for i in ids)

    def apply_chat_template(self, messages, tokenize, add_generation_prompt, chat_template=None):
        text = "".join(f"<|{m['role']}|>{m['content']}<|end|>\n" for m in messages)
        return text + ("<|assistant|>" if add_generation_prompt else "")


class StandInEngine:
    """Answers each prompt with the text `answers` gives it, then a new line and end of sequence."""

    context_length, eos_ids, threads = 4096, {0}, 1

    def __init__(self, answers, model_dir="stand-in"):
        self.answers, self.model_dir = answers, Path(model_dir)

    def load_adapter(self, name, path):
        pass

    def generate_ids(self, prompt_ids, max_new_tokens, guidance_regex=None, adapter=None):
        ids = [ord(ch) for ch in self.answers(CharTokenizer().decode(prompt_ids)) + "\n"]
        yield from (ids + [0])[:max_new_tokens]


def stand_in(project, rows, answer, made):
    """An engine class whose answer to each row's prompt is answer(row_number, reference); `made` counts them."""
    tokenizer = CharTokenizer()
    by_prompt = {
        project.task.prompt_for_row(row, tokenizer): answer(number, project.task.reference(row))
        for number, row in enumerate(rows)
    }

    def engine(model_dir, device="cpu", lora_dir=None, dtype="float32"):
        made.append(lora_dir)
        return StandInEngine(by_prompt.__getitem__, model_dir)

    return engine


@pytest.fixture
def scoring(monkeypatch, tmp_path):
    """score_export on a stand-in model folder, with the report folder and the fine-tune's checkpoint in tmp."""
    monkeypatch.setattr(Project, "report_dir", property(lambda self: tmp_path / "report"))
    checkpoint = tmp_path / "checkpoint-10"
    checkpoint.mkdir()
    (checkpoint / "adapter_model.safetensors").write_bytes(b"lora weights")
    monkeypatch.setattr(olive_eval, "best_adapter", lambda project: checkpoint)
    monkeypatch.setattr(olive_eval, "load_tokenizer", lambda folder: CharTokenizer())
    # timed by benchmark.py's own child process on the real model (the end-to-end tests run it)
    monkeypatch.setattr(olive_eval, "decode_speed", lambda project, folder, adapter: 123.4)
    model = tmp_path / "candidate"
    model.mkdir()
    (model / "model.onnx.data").write_bytes(b"\0" * 2_000_000)

    made = {"onnx": [], "torch": []}

    def score(rows, onnx_answer, fp32_answer):
        project = Project.load()
        monkeypatch.setattr(olive_eval, "load_rows", lambda path, task: rows)
        answers = {"onnx": onnx_answer, "torch": fp32_answer}
        engines = {name: stand_in(project, rows, answers[name], made[name]) for name in answers}
        monkeypatch.setattr(olive_eval, "ENGINES", engines)
        return olive_eval.score_export(SimpleNamespace(model_path=str(model / "model.onnx")))

    score.made = made
    return score


def sample_rows():
    project = Project.load()
    return olive_eval.load_rows(project.validation_file, project.task)


def test_labels_are_scored_by_accuracy_and_capped_a_point_below_fp32(scoring):
    rows = sample_rows()
    wrong = 6  # the last six rows get a label that is always wrong
    result = scoring(rows, lambda n, ref: ref if n < len(rows) - wrong else "no such label", lambda n, ref: ref)
    assert result["score"] == (len(rows) - wrong) / len(rows) and result["fp32_score"] == 1.0
    assert result["selection"] == result["score"]  # below fp32 - 1 point: ranked by its score
    assert result["size_mb"] == 2.0 and result["tokens_per_second"] == 123.4
    every_row = scoring(rows, lambda n, ref: ref, lambda n, ref: ref)
    assert every_row["score"] == 1.0 and every_row["selection"] == pytest.approx(1.0 - olive_eval.TOLERANCE)


def test_free_text_answers_are_scored_by_token_f1(scoring):
    project = Project.load()
    if project.data_format != "columns":
        pytest.skip("free-text rows are written for the columns format")
    rows = [
        {project.task.input_column: f"question {n}", project.task.output_column: f"red apple pie {n}"} for n in range(4)
    ]
    # "red apple pie" against "red apple pie N": precision 1, recall 3/4, F1 6/7; fp32 answers the reference
    # (answers of at most 16 characters: the task's answer length, one token per character here)
    result = scoring(rows, lambda n, ref: "red apple pie", lambda n, ref: ref)
    assert result["score"] == pytest.approx(6 / 7) and result["fp32_score"] == 1.0


def test_the_fp32_reference_is_computed_once_per_fine_tune(scoring):
    rows = sample_rows()
    first = scoring(rows, lambda n, ref: ref, lambda n, ref: ref)
    # a second candidate of the same fine-tune: the fp32 score comes from the report folder, not from PyTorch
    second = scoring(rows, lambda n, ref: "no such label", lambda n, ref: "never asked")
    assert len(scoring.made["torch"]) == 1 and len(scoring.made["onnx"]) == 2
    assert first["fp32_score"] == second["fp32_score"] == 1.0 and second["score"] == 0.0


def olive_ranking(candidates):
    """Olive's own ranking (engine.output) of candidates {score, tokens_per_second}, by this config's priorities."""
    from olive.engine.output import BaseRankedOutput

    config = Project.load().config
    if "evaluators" not in config:
        pytest.skip("no export search in this project (not int4 on CPU)")
    (metric,) = config["evaluators"][config["evaluator"]]["metrics"]
    ranked = sorted((sub["priority"], sub["name"]) for sub in metric["sub_types"] if sub["priority"] > 0)
    objectives = {f"{metric['name']}-{name}": {} for _, name in ranked}
    items = []
    for candidate in candidates:
        values = {"selection": olive_eval.selection_value(candidate["score"], 0.95), **candidate}
        items.append(
            SimpleNamespace(
                name=candidate["name"],
                metrics={
                    "value": {f"{metric['name']}-{key}": {"value": value} for key, value in values.items()},
                    "cmp_direction": dict.fromkeys(objectives, 1),
                },
            )
        )
    return [item.name for item in BaseRankedOutput()._sort_by_metrics(items, objectives)]


def test_olive_keeps_the_fastest_candidate_within_a_point_of_fp32():
    ranking = olive_ranking(
        [
            {"name": "as good, slow", "score": 0.95, "tokens_per_second": 100.0},
            {"name": "a point below, faster", "score": 0.94, "tokens_per_second": 150.0},
            {"name": "five points below, fastest", "score": 0.90, "tokens_per_second": 200.0},
            {"name": "better, slowest", "score": 0.96, "tokens_per_second": 90.0},
        ]
    )
    assert ranking[0] == "a point below, faster" and ranking[-1] == "five points below, fastest"


def test_olive_keeps_the_most_accurate_when_none_is_within_a_point():
    ranking = olive_ranking(
        [
            {"name": "fast", "score": 0.80, "tokens_per_second": 200.0},
            {"name": "accurate", "score": 0.90, "tokens_per_second": 100.0},
        ]
    )
    assert ranking[0] == "accurate"


def test_the_report_lists_every_candidate_and_marks_the_kept_one(tmp_path):
    model_dir = tmp_path / "model"
    nodes = {}
    for number, (algorithm, symmetric, score) in enumerate([("k_quant_mixed", True, 0.9), ("default", False, 0.8)]):
        folder = tmp_path / f"candidate-{number}"
        folder.mkdir()
        (folder / "model.onnx").write_bytes(f"graph {number}".encode())
        nodes[f"builder-{number}"] = {
            "from_pass": "modelbuilder",
            "pass_run_config": {
                "precision": "int4",
                "int4_algo_config": algorithm,
                "int4_block_size": 32,
                "int4_is_symmetric": symmetric,
            },
            "model_config_data": {"config": {"model_path": str(folder)}},
            "metrics": {
                "value": {
                    f"export-{key}": {"value": value}
                    for key, value in {
                        "score": score,
                        "fp32_score": 0.875,
                        "tokens_per_second": 100.0 + number,
                        "size_mb": 200.0,
                        "selection": score,
                    }.items()
                }
            },
        }
    model_dir.mkdir()
    (model_dir / "footprint.json").write_text(json.dumps(nodes))
    (model_dir / "model.onnx").write_bytes(b"graph 1")  # Olive copied the second candidate
    rows = search_report.candidates(model_dir)
    assert [row["recipe"] for row in rows] == [
        "int4 k_quant_mixed, block 32",
        "int4 default, block 32, asymmetric",
    ]
    assert [row["kept"] for row in rows] == [False, True]
    line = search_report.kept_line(rows)
    assert line.startswith("export recipe: int4 default, block 32, asymmetric (the best of 2 tried)")
    assert "0.800 against 0.875 in fp32 (-7.5 points)" in line
    assert search_report.candidates(tmp_path / "no model") == []


def test_a_candidate_that_cannot_be_scored_ranks_last_instead_of_failing_the_run(monkeypatch, capsys):
    from olive.evaluator.metric import Metric

    config = Project.load().config
    if "evaluators" not in config:
        pytest.skip("no export search in this project (not int4 on CPU)")
    metrics = [Metric(**metric) for metric in config["evaluators"][config["evaluator"]]["metrics"]]

    def broken(model):
        raise RuntimeError("the model folder is empty")

    monkeypatch.setattr(olive_eval, "score_export", broken)
    result = olive_eval.ExportSearchEvaluator().evaluate(SimpleNamespace(model_path="/nowhere/model.onnx"), metrics)
    assert result["export-selection"].value == -1.0 and result["export-tokens_per_second"].value == 0.0
    assert "could not be scored: the model folder is empty" in capsys.readouterr().out
