"""`ragway kb create|list|delete` and `ragway ingest PATH... --kb NAME`: knowledge bases on a
running gateway, over its HTTP API.

Each file is one document whose id is its absolute path, so ingesting the same files again
replaces their chunks instead of adding copies (the gateway's chunk ids are deterministic).
Files go up a few at a time; progress goes to stderr, the summary to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

COMMANDS = ("kb", "ingest")
# What the gateway parses (server/rag/parsers.py); other files in a folder are skipped.
SUFFIXES = frozenset({".txt", ".text", ".md", ".markdown", ".html", ".htm", ".pdf"})
DEFAULT_URL = os.environ.get("RAGWAY_URL", "http://127.0.0.1:8000")


class CliError(RuntimeError):
    """Stops the command; the message says why."""


def register(sub: Any) -> None:
    """Add the `kb` and `ingest` commands to the `ragway` parser's subparsers."""
    kb = sub.add_parser("kb", help="create, list or delete knowledge bases on a running gateway")
    kb_sub = kb.add_subparsers(dest="kb_command", required=True)
    create = kb_sub.add_parser("create", help="create a knowledge base")
    create.add_argument("name")
    create.add_argument("--description", default="")
    create.add_argument("--embedding-model", help="default: the gateway's default")
    create.add_argument("--fail-mode", choices=("open", "closed"), help="when retrieval fails")
    create.add_argument("--chunk-tokens", type=int)
    create.add_argument("--chunk-overlap", type=int)
    kb_sub.add_parser("list", help="list knowledge bases")
    delete = kb_sub.add_parser("delete", help="delete a knowledge base and its documents")
    delete.add_argument("name")
    ingest = sub.add_parser("ingest", help="add files (or folders of them) to a knowledge base")
    ingest.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    ingest.add_argument("--kb", required=True, help="knowledge base name")
    ingest.add_argument("--create", action="store_true", help="create the knowledge base first")
    ingest.add_argument("--concurrency", type=int, default=4, help="uploads in flight")
    for parser in (create, kb_sub.choices["list"], delete, ingest):
        parser.add_argument("--url", default=DEFAULT_URL, help=f"gateway (default {DEFAULT_URL})")
        parser.add_argument("--api-key", default=os.environ.get("RAGWAY_API_KEY"),
                            help="sent as a Bearer token (default: $RAGWAY_API_KEY)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Run a `kb` or `ingest` command; the exit status."""
    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    timeout = httpx.Timeout(600, connect=5)
    with httpx.Client(base_url=args.url.rstrip("/"), timeout=timeout, headers=headers) as http:
        try:
            if args.command == "ingest":
                return ingest(http, args)
            return kb_command(http, args)
        except httpx.TransportError as exc:
            raise CliError(f"cannot reach the gateway at {args.url}: {exc}") from exc


def _checked(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:500]
        raise CliError(f"{response.status_code}: {message}")
    return response.json()


def kb_command(http: httpx.Client, args: argparse.Namespace) -> int:
    if args.kb_command == "create":
        options = {
            "description": args.description,
            "embedding_model": args.embedding_model,
            "fail_mode": args.fail_mode,
            "chunk_tokens": args.chunk_tokens,
            "chunk_overlap": args.chunk_overlap,
        }
        body = {"name": args.name, **{k: v for k, v in options.items() if v is not None}}
        card = _checked(http.post("/v1/knowledge_bases", json=body))
        print(f"created {card['name']} (embedding model {card['embedding_model']})")
    elif args.kb_command == "list":
        for card in _checked(http.get("/v1/knowledge_bases"))["data"]:
            print(f"{card['name']}\t{card['embedding_model']}\t{card['description']}")
    else:
        _checked(http.delete(f"/v1/knowledge_bases/{args.name}"))
        print(f"deleted {args.name}")
    return 0


def files_under(paths: list[Path]) -> list[Path]:
    """The files named, and the supported files inside the folders named, in a stable order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = (p for p in path.rglob("*") if p.is_file())
            found += sorted(p for p in inside if p.suffix.lower() in SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise CliError(f"{path} does not exist")
    return list(dict.fromkeys(p.resolve() for p in found))


@dataclass
class Tally:
    total: int
    started: float = field(default_factory=time.monotonic)
    documents: int = 0
    chunks: int = 0
    failed: list[str] = field(default_factory=list)
    _next_note: float = 0.0

    def record(self, path: Path, result: dict[str, Any] | str) -> None:
        if isinstance(result, str):
            self.failed.append(f"{path}: {result}")
            print(f"ragway: {path}: {result}", file=sys.stderr, flush=True)
        else:
            self.documents += 1
            self.chunks += int(result["chunks"])
        done = self.documents + len(self.failed)
        now = time.monotonic()
        if done == self.total or now >= self._next_note:
            self._next_note = now + 1.0
            print(
                f"[{done}/{self.total}] {self.documents} documents, {self.chunks} chunks, "
                f"{now - self.started:.1f} s",
                file=sys.stderr,
                flush=True,
            )


def _upload(http: httpx.Client, kb: str, path: Path) -> dict[str, Any] | str:
    try:
        with path.open("rb") as handle:
            response = http.post(
                f"/v1/knowledge_bases/{kb}/documents",
                files={"file": (path.name, handle)},
                data={"id": str(path), "source": str(path)},
            )
        result: dict[str, Any] = _checked(response)
        return result
    except (CliError, OSError, httpx.HTTPError) as exc:
        return str(exc)


def _results(
    http: httpx.Client, kb: str, files: list[Path], concurrency: int
) -> Iterator[tuple[Path, dict[str, Any] | str]]:
    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        futures: dict[Future[dict[str, Any] | str], Path] = {
            pool.submit(_upload, http, kb, path): path for path in files
        }
        for future in as_completed(futures):
            yield futures[future], future.result()


def ingest(http: httpx.Client, args: argparse.Namespace) -> int:
    files = files_under(args.paths)
    if not files:
        raise CliError("no supported files found (" + ", ".join(sorted(SUFFIXES)) + ")")
    if args.create:
        response = http.post("/v1/knowledge_bases", json={"name": args.kb})
        if response.status_code != 409:  # already there is fine
            _checked(response)
    _checked(http.get(f"/v1/knowledge_bases/{args.kb}"))  # a clear error before any upload
    tally = Tally(len(files))
    for path, result in _results(http, args.kb, files, args.concurrency):
        tally.record(path, result)
    took = time.monotonic() - tally.started
    print(
        f"ingested {tally.documents} documents ({tally.chunks} chunks) into {args.kb} "
        f"in {took:.1f} s" + (f"; {len(tally.failed)} failed" if tally.failed else "")
    )
    return 1 if tally.failed else 0
