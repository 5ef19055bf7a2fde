"""slm/olive_compat.py: the Olive version guard (its fixes reach into Olive's internals, so a project on another
Olive stops with one ERROR line before anything is patched) and glibc's fixed mmap threshold."""

import ctypes

import pytest

from slm import olive_compat


def test_the_tested_version_is_the_rendered_pin_and_is_installed():
    tested = olive_compat.tested_olive_version()
    assert tested and f"{olive_compat.OLIVE_PACKAGE}=={tested}" in olive_compat.REQUIREMENTS.read_text()
    assert olive_compat.metadata.version(olive_compat.OLIVE_PACKAGE) == tested
    olive_compat.check_olive_version.cache_clear()
    olive_compat.check_olive_version()  # the pinned stack passes


@pytest.mark.parametrize("install", [olive_compat.apply, olive_compat.fail_when_no_model_is_produced])
def test_another_olive_stops_before_any_fix_is_installed(monkeypatch, capsys, install):
    tested = olive_compat.tested_olive_version()
    monkeypatch.setattr(olive_compat.metadata, "version", lambda name: "0.14.0")
    monkeypatch.setattr(olive_compat.FootprintNode, "update", "untouched")
    monkeypatch.setattr(olive_compat.atexit, "register", lambda handler: pytest.fail("exit handler registered"))
    olive_compat.check_olive_version.cache_clear()
    with pytest.raises(SystemExit) as stopped:
        install()
    olive_compat.check_olive_version.cache_clear()
    message = str(stopped.value.code)
    assert "\n" not in message and message.startswith("ERROR: olive-ai 0.14.0 is installed")
    assert f"olive-ai {tested} only" in message and f"`pip install olive-ai=={tested}`" in message
    assert "python setup/install.py" in message
    assert olive_compat.FootprintNode.update == "untouched"


def test_an_unpinned_olive_is_not_checked(tmp_path, monkeypatch):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("torch==2.13.0\nolive-ai\n")
    assert olive_compat.tested_olive_version(requirements) is None
    assert olive_compat.tested_olive_version(tmp_path / "missing.txt") is None
    requirements.write_text("olive-ai==0.13.0\n")
    assert olive_compat.tested_olive_version(requirements) == "0.13.0"


def test_another_onnxruntime_genai_stops_before_the_builder_is_patched(monkeypatch):
    """The same guard for the int4 export one weight at a time (slm/export/int4_by_tensor.py), which replaces
    a method of onnxruntime-genai's builder."""
    from slm.export import int4_by_tensor

    pin = int4_by_tensor.GENAI_PIN.search(olive_compat.REQUIREMENTS.read_text())
    assert pin, "setup/requirements.txt pins onnxruntime-genai"
    tested = pin.group(2)
    int4_by_tensor.check_genai_version.cache_clear()
    int4_by_tensor.check_genai_version()  # the pinned stack passes
    monkeypatch.setattr(int4_by_tensor.metadata, "version", lambda name: "0.20.0")
    int4_by_tensor.check_genai_version.cache_clear()
    with pytest.raises(SystemExit) as stopped:
        int4_by_tensor.use_for_modelbuilder()
    int4_by_tensor.check_genai_version.cache_clear()
    message = str(stopped.value.code)
    assert "\n" not in message and message.startswith("ERROR: onnxruntime-genai 0.20.0 is installed")
    assert f"`pip install onnxruntime-genai=={tested}`" in message


MALLINFO2_FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"


class _Mallinfo2(ctypes.Structure):  # glibc's struct mallinfo2 (hblkhd: the bytes in mmapped blocks)
    _fields_ = [(name, ctypes.c_size_t) for name in MALLINFO2_FIELDS.split()]


@pytest.mark.skipif(olive_compat._glibc_function("mallinfo2") is None, reason="glibc 2.33 or later only")
def test_a_block_of_a_few_mib_gets_its_own_mapping_after_a_larger_one_was_freed():
    """glibc alone raises its mmap threshold to the size of a freed 24 MiB block, so an 8 MiB block then comes from
    the heap, where it stays after it is freed; olive run fixes the threshold."""
    mallinfo2 = olive_compat._glibc_function("mallinfo2")
    mallinfo2.restype = _Mallinfo2
    olive_compat.map_large_blocks_apart()
    larger = bytearray(24 << 20)
    del larger
    olive_compat.release_memory()  # no free heap left on top for the next block to come from
    mapped_before = mallinfo2().hblkhd
    block = bytearray(max(8 << 20, olive_compat.MMAP_THRESHOLD_BYTES))
    assert mallinfo2().hblkhd - mapped_before >= len(block)
