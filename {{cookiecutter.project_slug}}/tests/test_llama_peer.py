"""The optional llama.cpp peer: pure helpers always; conversion and engine only when llama-cpp-python is installed."""

import io
import os
import tarfile
import time
from pathlib import Path

import pytest

from slm.bench import llama_peer

ROOT = Path(__file__).resolve().parents[1]


def test_quant_names_map_to_llama_cpp_file_types():
    assert llama_peer.quant_ftype("Q4_1") == 3
    assert llama_peer.quant_ftype("q4_0") == 2
    assert llama_peer.quant_ftype("Q4_K_M") == 15
    with pytest.raises(llama_peer.PeerError, match="Q4_1"):
        llama_peer.quant_ftype("Q3_XYZ")


@pytest.mark.skipif(not llama_peer.peer_available(), reason="llama-cpp-python not installed")
def test_quant_numbers_match_the_installed_binding():
    import llama_cpp

    for name, number in llama_peer.QUANT_FTYPES.items():
        constant = "LLAMA_FTYPE_ALL_F32" if name == "F32" else f"LLAMA_FTYPE_MOSTLY_{name}"
        assert getattr(llama_cpp, constant) == number, name


def test_converter_members_keep_only_the_converter_and_its_packages():
    prefix = "llama_cpp_python-0.3.36/vendor/llama.cpp/"
    names = [
        prefix + "convert_hf_to_gguf.py",
        prefix + "convert_hf_to_gguf_update.py",
        prefix + "conversion/__init__.py",
        prefix + "conversion/llama.py",
        prefix + "gguf-py/gguf/__init__.py",
        prefix + "src/llama.cpp",
        "llama_cpp_python-0.3.36/llama_cpp/llama.py",
    ]
    assert llama_peer.converter_members(names, prefix) == [names[0], names[2], names[3], names[4]]


def _fake_sdist(path, with_converter=True):
    prefix = "llama_cpp_python-0.3.36/vendor/llama.cpp/"
    files = {prefix + "conversion/__init__.py": b"", prefix + "gguf-py/gguf/__init__.py": b"", prefix + "README": b"x"}
    if with_converter:
        files[prefix + "convert_hf_to_gguf.py"] = b"print('converter')\n"
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_fetch_converter_extracts_from_a_local_sdist(tmp_path):
    sdist = _fake_sdist(tmp_path / "llama_cpp_python-0.3.36.tar.gz")
    script = llama_peer.fetch_converter(tmp_path / "cache", sdist=sdist)
    assert script.read_text() == "print('converter')\n"
    assert (tmp_path / "cache/conversion/__init__.py").is_file()
    assert (tmp_path / "cache/gguf-py/gguf/__init__.py").is_file()
    assert not (tmp_path / "cache/README").exists()
    # a second call reuses the cache and does not need the sdist
    assert llama_peer.fetch_converter(tmp_path / "cache", sdist=tmp_path / "missing.tar.gz") == script


def test_fetch_converter_rejects_an_sdist_without_the_converter(tmp_path):
    sdist = _fake_sdist(tmp_path / "other.tar.gz", with_converter=False)
    with pytest.raises(llama_peer.PeerError, match="convert_hf_to_gguf.py"):
        llama_peer.fetch_converter(tmp_path / "cache", sdist=sdist)


def test_is_stale_compares_modification_times(tmp_path):
    source, target = tmp_path / "weights.safetensors", tmp_path / "model.gguf"
    assert llama_peer.is_stale(target, [source])
    source.write_text("w")
    target.write_text("g")
    now = time.time()
    os.utime(source, (now - 10, now - 10))
    assert not llama_peer.is_stale(target, [source])
    os.utime(source, (now + 10, now + 10))
    assert llama_peer.is_stale(target, [source])


def test_convert_refuses_a_folder_without_a_model(tmp_path):
    with pytest.raises(llama_peer.PeerError, match="config.json"):
        llama_peer.convert_to_gguf(tmp_path, tmp_path / "out")


def test_gguf_file_names_the_missing_file(tmp_path):
    with pytest.raises(llama_peer.PeerError, match="model.gguf"):
        llama_peer.gguf_file(tmp_path)


def _tokenizer_dir():
    found = sorted(ROOT.glob("model-cache/*/tokenizer.json"))
    return found[0].parent if found else None


@pytest.mark.skipif(not llama_peer.peer_available(), reason="llama-cpp-python not installed")
@pytest.mark.skipif(_tokenizer_dir() is None, reason="no base model tokenizer in model-cache/")
def test_tiny_model_converts_and_matches_pytorch_greedy(tmp_path):
    """A random 2-layer Llama: f32 GGUF on llama.cpp must pick the same greedy tokens as PyTorch."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source = _tokenizer_dir()
    config = AutoConfig.from_pretrained(source)
    config.update({"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "head_dim": 16})  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model_dir = tmp_path / "tiny"
    model.save_pretrained(model_dir)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(source / name, model_dir / name)
    prompt = AutoTokenizer.from_pretrained(model_dir)("### Text: hello there", add_special_tokens=False)["input_ids"]

    with torch.inference_mode():
        expected = model.generate(torch.tensor([prompt]), max_new_tokens=6, min_new_tokens=6, do_sample=False)[0]
    expected = [int(t) for t in expected[len(prompt) :]]

    folder = llama_peer.convert_to_gguf(model_dir, tmp_path / "peer", quant="F32")
    engine = llama_peer.LlamaCppEngine(folder)
    got = list(engine.generate_ids(prompt, 6, ignore_eos=True))
    assert got == expected
    assert list(engine.generate_ids(prompt, 6, ignore_eos=True)) == got  # no state leaks between calls

    q4 = llama_peer.convert_to_gguf(model_dir, tmp_path / "peer", quant="Q4_0")
    assert (q4 / "model.gguf").stat().st_size < (folder / "model.gguf").stat().st_size
    assert (q4 / "tokenizer.json").is_file()
    assert len(list(llama_peer.LlamaCppEngine(q4).generate_ids(prompt, 6, ignore_eos=True))) == 6
