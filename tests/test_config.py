"""Settings (pydantic-settings): MIRAGE_* variables over mirage.toml over defaults, typed; a typo or a wrong type
is a one-line error naming the key and the valid ones, never a silent default."""

from __future__ import annotations

import pytest

from mirage_core.cli import main
from mirage_core.config import Settings, load_settings
from mirage_core.errors import MirageError


def test_variables_win_over_the_file_and_lists_are_joined(tmp_path, monkeypatch):
    config = tmp_path / "mirage.toml"
    config.write_text('encoder = "lite:/x/heads.safetensors"\ncorpus = ["/a", "/b"]\nindex = "faiss"\n')
    monkeypatch.delenv("MIRAGE_CORPUS", raising=False)
    monkeypatch.setenv("MIRAGE_INDEX", "exact")
    settings = load_settings(config)
    assert settings.encoder == "lite:/x/heads.safetensors" and settings.corpus == "/a:/b"
    assert settings.index == "exact"  # the environment wins
    assert settings.with_overrides(encoder="lite", split=None).encoder == "lite"


@pytest.mark.parametrize("text, message", [
    ('encodr = "lite"\n', "unknown setting 'encodr'.*the settings are encoder, corpus"),
    ("encoder = 3\n", "the setting 'encoder' .* valid string"),
    ('corpus = ["/a"\n', "not valid TOML"),
])
def test_a_mistake_in_the_file_is_one_clear_line(tmp_path, text, message):
    config = tmp_path / "mirage.toml"
    config.write_text(text)
    with pytest.raises(MirageError, match=message):
        load_settings(config)


def test_the_commands_say_so_and_exit_2(tmp_path, monkeypatch, capsys):
    (tmp_path / "mirage.toml").write_text('index = "exact"\nbundle_ulr = "https://x"\n')
    monkeypatch.chdir(tmp_path)
    assert main(["search", "chest x-ray"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "bundle_ulr" in error and "bundle_url" in error


def test_the_settings_are_frozen():
    with pytest.raises(Exception):  # noqa: B017 (pydantic's ValidationError for a frozen model)
        Settings().encoder = "other"
