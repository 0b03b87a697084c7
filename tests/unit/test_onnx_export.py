"""The ONNX export cache: keyed by the model files, written once, reused (a fake exporter)."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.embedding.onnx_export import ensure_export, export_path, model_digest


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny-model"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "config.json").write_text('{"hidden_size": 4}')
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    return folder


class CountingExporter:
    def __init__(self) -> None:
        self.calls: list[tuple[Path, Path]] = []

    def __call__(self, model_dir: Path, out: Path) -> None:
        self.calls.append((model_dir, out))
        out.write_bytes(b"onnx bytes")


def test_export_once_then_reuse(model_dir: Path, tmp_path: Path) -> None:
    cache, exporter = tmp_path / "cache", CountingExporter()
    first = ensure_export(model_dir, cache, exporter)
    mtime = first.stat().st_mtime_ns
    second = ensure_export(model_dir, cache, exporter)

    assert first == second
    assert len(exporter.calls) == 1
    assert second.stat().st_mtime_ns == mtime
    # Written beside the target and renamed into place: no partial file is left.
    assert [p.name for p in first.parent.iterdir()] == ["model.onnx"]


def test_key_follows_the_model_files(model_dir: Path, tmp_path: Path) -> None:
    before = model_digest(model_dir)
    (model_dir / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    assert model_digest(model_dir) != before
    # A renamed file changes it too, even with the same bytes.
    (model_dir / "config.json").rename(model_dir / "config2.json")
    assert model_digest(model_dir) not in (before,)
    exporter = CountingExporter()
    ensure_export(model_dir, tmp_path / "cache", exporter)
    (model_dir / "extra.txt").write_text("new tokenizer file")
    assert not export_path(model_dir, tmp_path / "cache").exists()
    ensure_export(model_dir, tmp_path / "cache", exporter)
    assert len(exporter.calls) == 2


def test_failed_export_leaves_nothing(model_dir: Path, tmp_path: Path) -> None:
    def broken(model_dir: Path, out: Path) -> None:
        out.write_bytes(b"half a file")
        raise RuntimeError("export failed")

    with pytest.raises(RuntimeError):
        ensure_export(model_dir, tmp_path / "cache", broken)
    target = export_path(model_dir, tmp_path / "cache")
    assert list(target.parent.iterdir()) == []
