"""infer.py and benchmark.py refuse bad input with one clear line and a non-zero exit."""

import json


def test_missing_model_says_run_olive_first(bake):
    project = bake()
    result = project.run("inferences/infer.py", "--prompt", "hello")
    assert result.returncode == 1
    assert (
        "ERROR: no complete ONNX model in gen-model/model: run `olive run --config fine-tuning/olive-config.json` first"
        in result.stderr
    )


def test_half_built_model_is_refused(bake):
    project = bake()
    (project.path / "gen-model/model").mkdir()
    (project.path / "gen-model/model/genai_config.json").write_text("{}")
    result = project.run("inferences/infer.py", "--prompt", "hello")
    assert result.returncode == 1 and "no complete ONNX model" in result.stderr


def test_empty_prompt_is_refused(bake):
    result = bake().run("inferences/infer.py", "--prompt", "   ")
    assert result.returncode == 1
    assert "ERROR: --prompt is empty" in result.stderr


def test_eval_file_with_missing_column_is_refused(bake):
    project = bake()
    (project.path / "bad.json").write_text(json.dumps([{"phrase": "fine"}, {"text": "no phrase here", "tone": "joy"}]))
    result = project.run("inferences/infer.py", "--eval", "bad.json")
    assert result.returncode == 1
    assert "ERROR: bad.json: row 1: column 'tone' is missing" in result.stderr
    assert "ERROR: bad.json: row 2: column 'phrase' is missing" in result.stderr  # every bad row, not just the first


def test_benchmark_without_model_says_run_olive_first(bake):
    result = bake().run("inferences/benchmark.py", "--prompts", "2")
    assert result.returncode == 1
    assert "ERROR: no complete ONNX model in gen-model/model" in result.stderr


def test_help_works_for_every_script(bake):
    project = bake()
    for script in (
        "inferences/infer.py",
        "inferences/benchmark.py",
        "fine-tuning/check_config.py",
        "datasets/prepare.py",
        "setup/get_model.py",
    ):
        assert project.run(script, "--help").returncode == 0, script


def test_benchmark_with_deleted_olive_cache_says_what_to_do(bake):
    project = bake()
    model_dir = project.path / "gen-model/model"
    model_dir.mkdir()
    (model_dir / "genai_config.json").write_text("{}")
    (model_dir / "model.onnx").write_bytes(b"")
    # the footprint still names the merged model, but its cache folder is gone
    merged = {"from_pass": "mergeadapterweights", "model_config_data": {"config": {"model_path": "gen-model/gone"}}}
    (model_dir / "footprint.json").write_text(json.dumps({"node": merged}))
    result = project.run("inferences/benchmark.py", "--prompts", "2")
    assert result.returncode == 1
    assert "ERROR: no merged PyTorch model in gen-model/gone (was gen-model/olive-cache/ deleted?)" in result.stderr


def test_only_a_missing_slm_says_install_and_a_broken_slm_import_shows_its_error(bake):
    project = bake()
    not_installed = project.run("inferences/infer.py", "--help", env={"PYTHONPATH": ""})
    assert not_installed.returncode == 1
    assert "ERROR: slm is not installed for" in not_installed.stderr and "setup/install.py" in not_installed.stderr
    infer = project.path / "slm/infer.py"
    infer.write_text("import slm.no_such_module\n" + infer.read_text(encoding="utf-8"), encoding="utf-8")
    broken = project.run("inferences/infer.py", "--help")
    assert broken.returncode == 1
    assert "ModuleNotFoundError: No module named 'slm.no_such_module'" in broken.stderr
    assert "setup/install.py" not in broken.stderr
