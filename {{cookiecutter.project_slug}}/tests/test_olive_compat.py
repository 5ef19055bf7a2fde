"""The Olive version guard of slm/olive_compat.py: its fixes reach into Olive's internals, so a project on
another Olive stops with one ERROR line before anything is patched."""

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
