"""`python -m workers.embedding`: build the settings, run uvicorn on `create_app(settings)`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

from workers.embedding.app import create_app
from workers.embedding.settings import EmbeddingWorkerSettings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m workers.embedding",
        description="ragway's embedding worker (OpenAI-compatible /v1/embeddings). "
        "Flags override RAGWAY_EMBED_* environment variables.",
    )
    parser.add_argument("--host", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8002)")
    parser.add_argument("--model-dir", type=Path, help="sentence-transformers model folder")
    parser.add_argument("--served-model-name", help="model id clients ask for")
    parser.add_argument("--log-level", default="info", help="uvicorn log level")
    # Off by default, as for ragway's vLLM workers: a line per request costs the worker's
    # one event loop time on every query, and the gateway logs each request already.
    parser.add_argument("--access-log", action="store_true", help="log every request")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    flags: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "model_dir": args.model_dir,
        "served_model_name": args.served_model_name,
    }
    settings = EmbeddingWorkerSettings(**{k: v for k, v in flags.items() if v is not None})
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    app = create_app(settings, registry=registry)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        access_log=args.access_log,
    )


if __name__ == "__main__":
    main()
