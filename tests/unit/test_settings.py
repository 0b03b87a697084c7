from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from router.types import WorkerKind
from server.settings import RagwaySettings


def test_yaml_file_loads_with_nesting(tmp_path: Path) -> None:
    config = tmp_path / "ragway.yaml"
    config.write_text(
        "port: 9000\n"
        "workers:\n"
        "  - {url: 'http://a:8000/', kind: chat, models: [m]}\n"
        "  - {url: 'http://b:8002', kind: embedding, api_key: secret}\n"
        "aliases: {gpt-4o-mini: m}\n"
        "timeouts: {read: 600}\n"
    )
    settings = RagwaySettings.load(config)
    assert settings.port == 9000
    assert settings.workers[0].base_url == "http://a:8000"
    assert settings.workers[1].kind is WorkerKind.EMBEDDING
    assert settings.workers[1].api_key is not None
    assert "secret" not in repr(settings)
    assert settings.timeouts.read == 600
    assert settings.timeouts.connect == 5.0


def test_constructor_arguments_override_the_file(tmp_path: Path) -> None:
    config = tmp_path / "ragway.yaml"
    config.write_text("port: 9000\nlog_level: debug\n")
    settings = RagwaySettings.load(config, port=9100)
    assert (settings.port, settings.log_level) == (9100, "debug")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RagwaySettings.load(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    "bad",
    [
        {"workers": [{"url": "not a url"}]},
        {"workers": [{"url": "http://a", "kind": "gpu"}]},
        {"timeouts": {"read": 0}},
        {"unknown_key": 1},
        {"aliases": {"a": "b", "b": "c"}},
        {"log_level": "loud"},
    ],
)
def test_bad_settings_fail_fast(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RagwaySettings.model_validate(bad)
