"""The CPU forecast and the memory guard (slm/train/footprint.py), on plain data: no torch, no Olive, no training."""

import json
import shutil

import pytest

from slm.errors import UserError
from slm.project import OLIVE_CONFIG, Project
from slm.train import check_config as olive_check
from slm.train import checkpoints, footprint, prepare

# Phi-3-mini-4k-instruct's published shape (config.json keys the parameter count reads)
PHI3_MINI = {
    "model_type": "phi3",
    "hidden_size": 3072,
    "intermediate_size": 8192,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "num_hidden_layers": 32,
    "vocab_size": 32064,
    "tie_word_embeddings": False,
}


@pytest.fixture
def phi_project(tmp_path, monkeypatch):
    """A copy of this project in tmp_path, on CPU, whose base model folder holds Phi-3-mini's config.json."""

    def make(layers=32, name="Phi-3-mini-4k-instruct"):
        config = json.loads(OLIVE_CONFIG.read_text(encoding="utf-8"))
        config["input_model"]["model_path"] = f"model-cache/{name}"
        config["data_configs"][0]["pre_process_data_config"].pop("data_version", None)
        for role in ("host", "target"):
            config["systems"][config.get(role, "local_system")]["accelerators"][0]["device"] = "cpu"
        (tmp_path / "fine-tuning").mkdir(exist_ok=True)
        (tmp_path / OLIVE_CONFIG).write_text(json.dumps(config), encoding="utf-8")
        model = tmp_path / "model-cache" / name
        model.mkdir(parents=True, exist_ok=True)
        (model / "config.json").write_text(json.dumps(PHI3_MINI | {"num_hidden_layers": layers}), encoding="utf-8")
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv(footprint.MEMORY_OVERRIDE, raising=False)
        return Project.load()

    return make


def test_the_parameter_count_is_the_published_one():
    assert (
        footprint.parameter_count(PHI3_MINI) == footprint.MEASURED["Phi-3-mini-4k-instruct"].parameters == 3_821_079_552
    )


def test_a_model_not_downloaded_yet_gets_its_published_shape(phi_project):
    project = phi_project(name="Phi-3.5-mini-instruct")
    (project.base_model_dir / "config.json").unlink()
    expected = footprint.forecast(project)
    assert expected.basis == "Phi-3-mini-4k-instruct" and not expected.estimated  # the same published shape
    project = phi_project(name="Phi-4-mini-instruct")
    (project.base_model_dir / "config.json").unlink()
    expected = footprint.forecast(project)
    assert expected.basis == "Phi-4-mini-instruct" and not expected.estimated  # measured at its own full size


def test_the_measured_model_gets_its_measured_figures(phi_project):
    expected = footprint.forecast(phi_project())
    assert not expected.estimated
    measured = footprint.MEASURED["Phi-3-mini-4k-instruct"]
    stages = ["training", "export"] if expected.exports_adapter else ["training", "merge", "export"]
    assert expected.peaks == {stage: measured.stage_gib[stage].at(expected.step_tokens[1]) for stage in stages}
    line = expected.describe()
    assert line.startswith("forecast on a 2-core CPU (measured on Phi-3-mini-4k-instruct)")
    assert "s per training step" in line and "GiB" in line


def test_longer_rows_make_a_longer_step_and_more_memory_and_the_line_says_whose_rows(phi_project):
    """Before data is read a step is the sample's; prepare.py times it and sizes the training at the rows' own."""
    project = phi_project()
    expected = footprint.forecast(project)
    measured = footprint.MEASURED["Phi-3-mini-4k-instruct"]
    per_row = project.batch_size / measured.batch_size  # this project's batch against the measured runs'
    assert expected.step_tokens == tuple(tokens * per_row for tokens in measured.sample_tokens)
    assert expected.seconds_per_step == pytest.approx(measured.step_seconds.at(expected.step_tokens[0]))
    assert f"({expected.step_tokens[0]:.0f} tokens padded, the sample's rows)" in expected.describe()
    longer = expected.for_rows((4 * 1024, 4 * 1024))
    assert longer.seconds_per_step > 10 * expected.seconds_per_step
    assert longer.peaks["training"] > expected.peaks["training"]
    assert longer.peaks["export"] > expected.peaks["export"]  # the training's leftovers
    assert "(4096 tokens padded, these rows)" in longer.describe()


def test_a_figure_by_tokens_runs_through_its_points_and_carries_the_last_line_on():
    line = footprint.ByTokens(((0, 1.0), (100, 3.0), (200, 4.0)))
    assert [line.at(tokens) for tokens in (0, 50, 100, 150, 200, 400)] == [1.0, 2.0, 3.0, 3.5, 4.0, 6.0]
    assert footprint.ByTokens(((100, 2.5),)).at(5000) == 2.5  # one point: its growth not measured
    assert line.scaled(2).at(150) == 7.0


def test_rows_too_long_for_this_machine_are_refused_with_what_to_change(phi_project):
    project = phi_project()
    assert footprint.check_fits(project, memory_gib=12) is not None  # the sample's rows fit 12 GiB
    with pytest.raises(UserError) as refused:  # 8 rows of 1,024 tokens a step
        footprint.check_fits(project, memory_gib=12, step_tokens=(8 * 1024, 8 * 1024))
    message = str(refused.value)
    assert "training stage is forecast to peak" in message and len(message.splitlines()) == 1
    assert "fewer rows per batch" in message and "max_seq_len (the largest step of these rows: 8192 tokens)" in message


def test_another_size_is_scaled_by_parameter_count_and_says_estimated(phi_project):
    expected = footprint.forecast(phi_project(layers=4, name="my-phi"))
    measured = footprint.MEASURED["Phi-3-mini-4k-instruct"]
    ratio = footprint.parameter_count(PHI3_MINI | {"num_hidden_layers": 4}) / measured.parameters
    assert expected.estimated and "estimated from Phi-3-mini-4k-instruct" in expected.describe()
    assert expected.peaks["export"] == pytest.approx(measured.stage_gib["export"].at(expected.step_tokens[1]) * ratio)
    assert expected.seconds_per_step == pytest.approx(measured.step_seconds.at(expected.step_tokens[0]) * ratio)


def test_the_guard_refuses_a_run_over_the_machines_memory_in_one_line(phi_project):
    with pytest.raises(UserError) as refused:
        footprint.check_fits(phi_project(), memory_gib=8)
    message = str(refused.value)
    assert len(message.splitlines()) == 1
    assert "more than this machine's 8.0 GiB" in message and footprint.MEMORY_OVERRIDE in message
    assert footprint.check_fits(phi_project(layers=4, name="small-phi"), memory_gib=8) is not None


def test_a_model_trained_on_a_gpu_gets_no_cpu_forecast_wherever_it_runs(phi_project):
    """device cuda-train-cpu-run: Olive's host is the GPU, its target the CPU; the CPU figures are not its run's."""
    config = phi_project().config
    gpu = {"type": "LocalSystem", "accelerators": [{"device": "gpu", "execution_providers": ["CUDAExecutionProvider"]}]}
    cpu = {"type": "LocalSystem", "accelerators": [{"device": "cpu", "execution_providers": ["CPUExecutionProvider"]}]}
    config |= {"systems": {"local_gpu": gpu, "local_cpu": cpu}, "host": "local_gpu", "target": "local_cpu"}
    project = Project(config)
    assert (project.training_device, project.device) == ("cuda", "cpu")
    assert footprint.check_fits(project, memory_gib=16) is None


def only_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ERROR: ") and "forecast to peak" in err[0]


def test_prepare_refuses_before_writing_anything(phi_project, capsys, monkeypatch, tmp_path):
    project = phi_project()
    monkeypatch.setattr(footprint, "machine_memory_gib", lambda: 8.0)
    source = tmp_path / "raw.jsonl"
    source.write_text("", encoding="utf-8")
    before = OLIVE_CONFIG.read_bytes()
    assert prepare.main([str(source)]) == 1
    only_error_line(capsys)
    assert not any(path.exists() for path in (project.train_file, project.validation_file, project.eval_file))
    assert OLIVE_CONFIG.read_bytes() == before


def test_check_config_paths_refuses_before_olive_is_imported(phi_project, capsys, monkeypatch):
    phi_project()
    monkeypatch.setattr(footprint, "machine_memory_gib", lambda: 8.0)
    assert olive_check.main([str(OLIVE_CONFIG), "--paths"]) == 1
    only_error_line(capsys)


def test_olive_run_stops_before_any_pass_unless_overridden(phi_project, monkeypatch):
    project = phi_project()
    monkeypatch.setattr(footprint, "machine_memory_gib", lambda: 8.0)
    with pytest.raises(SystemExit) as stopped:
        checkpoints.check_project_at_start()
    assert str(stopped.value).startswith("ERROR: ") and len(str(stopped.value).splitlines()) == 1
    monkeypatch.setenv(footprint.MEMORY_OVERRIDE, "1")
    checkpoints.check_project_at_start()
    if project.checkpoint_dir:
        shutil.rmtree(project.checkpoint_dir)


def test_olive_run_sizes_the_training_by_the_training_files_rows(phi_project, monkeypatch):
    """A file made longer after prepare.py (or a max_seq_len raised) is refused by olive run's own check."""
    phi_project()
    config = json.loads(OLIVE_CONFIG.read_text(encoding="utf-8"))
    config["data_configs"][0]["pre_process_data_config"]["max_seq_len"] = 2048
    OLIVE_CONFIG.write_text(json.dumps(config), encoding="utf-8")
    project = Project.load()
    monkeypatch.setattr(footprint, "machine_memory_gib", lambda: 12.0)
    project.train_file.parent.mkdir(parents=True, exist_ok=True)

    def write_rows(text):
        if project.data_format == "messages":
            turns = [{"role": "user", "content": text}, {"role": "assistant", "content": "joy"}]
            lines = [json.dumps({"messages": turns})] * 16
            project.train_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        else:
            columns = project.task.columns
            rows = [{columns[0]: text, columns[1]: "joy"} for _ in range(16)]
            project.train_file.write_text(json.dumps(rows), encoding="utf-8")
        return checkpoints.training_step_tokens(project)

    short = write_rows("a short sentence")
    batch = project.batch_size
    assert short[1] < batch * 20
    checkpoints.check_project_at_start()  # short rows fit 12 GiB (the export stage, 11.6, is the peak)
    longest = write_rows("word " * 3000)
    assert longest == (batch * 2048, batch * 2048)  # estimated, cut at max_seq_len
    with pytest.raises(SystemExit) as stopped:
        checkpoints.check_project_at_start()
    assert "training stage is forecast to peak" in str(stopped.value) and "fewer rows per batch" in str(stopped.value)
    if project.checkpoint_dir:
        shutil.rmtree(project.checkpoint_dir)
