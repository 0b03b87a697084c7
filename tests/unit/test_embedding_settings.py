"""The embedding worker's runtime choice: ONNX Runtime on the CPU, torch elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ragway.launch import embedding_spec
from workers.embedding.settings import EmbeddingWorkerSettings


def test_cpu_defaults_to_onnx_and_gpu_to_torch() -> None:
    assert EmbeddingWorkerSettings().runtime == "onnx"
    assert EmbeddingWorkerSettings(device="cuda").runtime == "torch"
    assert EmbeddingWorkerSettings(backend="torch").runtime == "torch"


def test_onnx_on_a_gpu_is_refused() -> None:
    with pytest.raises(ValidationError, match="CPU only"):
        EmbeddingWorkerSettings(backend="onnx", device="cuda")


def test_ragway_up_puts_the_export_in_its_data_dir(tmp_path: Path) -> None:
    spec = embedding_spec(tmp_path / "model", "m", host="127.0.0.1", port=1, cache_dir=tmp_path)
    assert spec.env == {"RAGWAY_EMBED_CACHE_DIR": str(tmp_path)}
    assert "cache_dir" in EmbeddingWorkerSettings.model_fields
