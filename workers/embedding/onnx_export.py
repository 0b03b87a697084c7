"""Exporting a sentence-transformers model to ONNX once, into ragway's cache, and finding the
export again on the next start.

The export is the model's whole sentence-transformers pipeline as its own config declares it
(`modules.json`: the transformer, then its pooling, then normalisation where listed), traced by
`torch.onnx.export` from the local folder: nothing is downloaded. sentence-transformers' own
ONNX backend would need `optimum`, whose releases pin transformers 4.x (installing it would
downgrade the stack's transformers 5), so ragway exports with torch directly.

An export is keyed by a hash of every file in the model folder and `EXPORT_VERSION`: new
weights, a new tokenizer or a change to the export code below give a new file, and an
unchanged model is never exported twice. Writes go to a temporary file renamed into place, so
two workers starting together, or one killed mid-export, never leave a torn file behind.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Bump when the exported graph changes (inputs, outputs, opset, what is traced).
EXPORT_VERSION = 1
OPSET = 17
OUTPUT = "sentence_embedding"
MODEL_FILE = "model.onnx"

Exporter = Callable[[Path, Path], None]


def model_digest(model_dir: Path) -> str:
    """sha256 over the export version and every file of the model folder (paths and bytes)."""
    digest = hashlib.sha256(f"ragway-onnx-export/{EXPORT_VERSION}/opset{OPSET}".encode())
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(model_dir).as_posix()
        if relative.startswith(".git"):
            continue
        digest.update(b"\0" + relative.encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def export_path(model_dir: Path, cache_dir: Path) -> Path:
    return cache_dir / f"{model_dir.name}-{model_digest(model_dir)[:16]}" / MODEL_FILE


def ensure_export(model_dir: Path, cache_dir: Path, exporter: Exporter | None = None) -> Path:
    """The cached export of `model_dir`, made first if there is none. Blocking: the first call
    imports torch and traces the model (seconds); later ones hash the model files."""
    target = export_path(model_dir, cache_dir)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{MODEL_FILE}.{os.getpid()}.partial")
    try:
        (exporter or export_onnx)(model_dir, partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def export_onnx(model_dir: Path, out: Path) -> None:
    """Trace the sentence-transformers pipeline in `model_dir` into an ONNX file at `out`."""
    # Heavy, and needed only for the one export: imported here.
    import torch
    from sentence_transformers import SentenceTransformer

    class Pipeline(torch.nn.Module):
        """Passes the inputs by keyword, in the feature dict sentence-transformers' modules
        read: BertModel's positional parameters past the mask do not line up with the
        tokenizer's outputs (a positional use_cache lands where token_type_ids were meant)."""

        def __init__(self, model: Any, names: list[str]):
            super().__init__()
            self.model = model
            self.names = names

        def forward(self, *tensors: Any) -> Any:
            return self.model(dict(zip(self.names, tensors, strict=True)))[OUTPUT]

    model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True).eval()
    sample = model.tokenizer(["an example", "a second, longer example"], padding=True)
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
    tensors = tuple(torch.tensor(sample[n], dtype=torch.int64) for n in names)
    axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "tokens"} for n in names}
    with torch.no_grad(), warnings.catch_warnings():
        # Tracer warnings name branches on shapes that hold for every input (BERT is not
        # causal; the mask always matches the token embeddings).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Pipeline(model, names),
            tensors,
            str(out),
            input_names=names,
            output_names=[OUTPUT],
            dynamic_axes={**axes, OUTPUT: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
