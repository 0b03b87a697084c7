"""A sentence-transformers model run by ONNX Runtime on the CPU, from its cached export.

Tokenising uses the model's own `tokenizer.json` through the Rust `tokenizers` library (what
transformers' fast tokenizer wraps), with the folder's fixed padding switched off and
truncation at the model's `max_seq_length`, as sentence-transformers does. Each thread that runs
the model gets its own InferenceSession, so the batcher's interactive and bulk lanes run side by
side with their own intra-op pools instead of queueing in one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from workers.embedding.encoder import Vectors, check_model_dir, normalized
from workers.embedding.onnx_export import OUTPUT, Exporter, ensure_export


def max_seq_length(model_dir: Path) -> int:
    """The window sentence-transformers truncates to: its own config, else the model's."""
    st_config = model_dir / "sentence_bert_config.json"
    if st_config.is_file():
        declared = json.loads(st_config.read_text()).get("max_seq_length")
        if isinstance(declared, int):
            return declared
    return int(json.loads((model_dir / "config.json").read_text())["max_position_embeddings"])


def load_tokenizer(model_dir: Path) -> Tokenizer:
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"The ONNX backend needs a fast tokenizer: no {path}")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_seq_length(model_dir))
    return tokenizer


def session_options(threads: int | None) -> ort.SessionOptions:
    """One session's options: all exact graph optimisations, one operator at a time, and
    `threads` intra-op threads (None: ONNX Runtime's default, one per physical core)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads is not None:
        options.intra_op_num_threads = threads
    # Pool threads spin between the operators of one pass (a pass is ~100 small operators;
    # waking sleeping threads for each cost a short query 4.0 ms instead of 3.1 ms at p50 with
    # two threads on this project's 2-core machine), and stop spinning as soon as the pass
    # returns, so that between passes the cores go to the other lane, the event loop and, on a
    # small machine, the gateway. With one thread there is no pool and neither applies.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


class OnnxEncoder:
    def __init__(self, model_path: Path, tokenizer: Tokenizer, *, threads: int | None = None):
        self._model_path = model_path
        self._tokenizer = tokenizer
        self._threads = threads
        self._local = threading.local()
        session = self._session()
        self._inputs = [i.name for i in session.get_inputs()]
        dimension = session.get_outputs()[0].shape[-1]
        if not isinstance(dimension, int):
            raise ValueError("the exported model does not declare a fixed embedding dimension")
        self._dimension = dimension

    @classmethod
    def load(
        cls,
        model_dir: Path | None,
        *,
        cache_dir: Path,
        threads: int | None = None,
        exporter: Exporter | None = None,
    ) -> Self:
        """Export once (into `cache_dir`) or reuse the export, then open it. Blocking."""
        folder = check_model_dir(model_dir)
        path = ensure_export(folder, cache_dir, exporter)
        return cls(path, load_tokenizer(folder), threads=threads)

    @property
    def model_path(self) -> Path:
        return self._model_path

    @property
    def dimension(self) -> int:
        return self._dimension

    def _session(self) -> ort.InferenceSession:
        session: ort.InferenceSession | None = getattr(self._local, "session", None)
        if session is None:
            options = session_options(self._threads)
            session = ort.InferenceSession(
                str(self._model_path), options, providers=["CPUExecutionProvider"]
            )
            self._local.session = session
        return session

    def encode(self, texts: Sequence[str]) -> Vectors:
        encodings = self._tokenizer.encode_batch(list(texts))
        longest = max((len(e.ids) for e in encodings), default=0)
        arrays = {
            "input_ids": np.zeros((len(encodings), longest), dtype=np.int64),
            "attention_mask": np.zeros((len(encodings), longest), dtype=np.int64),
            "token_type_ids": np.zeros((len(encodings), longest), dtype=np.int64),
        }
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            arrays["input_ids"][row, :n] = encoding.ids
            arrays["attention_mask"][row, :n] = 1
            arrays["token_type_ids"][row, :n] = encoding.type_ids
        feed: dict[str, Any] = {name: arrays[name] for name in self._inputs}
        (vectors,) = self._session().run([OUTPUT], feed)
        return normalized(np.asarray(vectors, dtype=np.float32))

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self._tokenizer.encode_batch(list(texts))]
