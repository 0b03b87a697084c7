"""`ragway kb` and `ragway ingest` against the gateway with fake workers, served by uvicorn on
a free port in a thread: the CLI's own HTTP client, end to end."""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry

from ragway import kb_cli
from ragway.stack import free_port
from server.app import create_app
from server.services.embeddings import TokenDecoder
from tests.api.conftest import settings_for_fakes
from tests.fakes.documents import HTML, MARKDOWN
from tests.fakes.worker import FakeWorker, HostRouter


@pytest.fixture
def url(tmp_path: Path, token_decoder: TokenDecoder) -> Iterator[str]:
    transport = HostRouter()
    transport.add("chat.test", FakeWorker(models=["tiny-chat"]))
    transport.add("embed.test", FakeWorker(models=["tiny-embed"], kind="embedding"))
    settings = settings_for_fakes(rag={"data_dir": str(tmp_path / "data")})
    app = create_app(
        settings,
        upstream_transport=transport,
        registry=CollectorRegistry(),
        token_decoder=token_decoder,
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the gateway did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def run(url: str, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    kb_cli.register(parser.add_subparsers(dest="command", required=True))
    return kb_cli.run(parser.parse_args([*argv, "--url", url]))


def get(url: str, path: str) -> Any:
    return httpx.get(url + path).json()


def corpus(root: Path) -> Path:
    docs = root / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.txt").write_text("Alpha notes. " * 300)
    (docs / "b.md").write_bytes(MARKDOWN)
    (docs / "sub" / "c.html").write_bytes(HTML)
    (docs / "skip.bin").write_bytes(b"\x00\x01")
    return docs


def test_kb_commands(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(url, "kb", "create", "docs", "--description", "d") == 0
    assert run(url, "kb", "list") == 0
    assert "docs\ttiny-embed\td" in capsys.readouterr().out
    with pytest.raises(kb_cli.CliError, match="409"):
        run(url, "kb", "create", "docs")
    assert run(url, "kb", "delete", "docs") == 0
    with pytest.raises(kb_cli.CliError, match="404"):
        run(url, "kb", "delete", "docs")
    with pytest.raises(kb_cli.CliError, match="cannot reach the gateway"):
        run("http://127.0.0.1:9", "kb", "list")


def test_ingest_folder_twice_gives_the_same_chunks(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = corpus(tmp_path)
    args = ("ingest", str(docs), "--kb", "docs", "--create", "--concurrency", "2")
    assert run(url, *args) == 0
    out, err = capsys.readouterr()
    assert "[3/3] 3 documents" in err
    assert out.startswith("ingested 3 documents (")
    first = get(url, "/v1/knowledge_bases/docs")["chunks"]
    assert first > 3
    assert run(url, *args) == 0
    assert get(url, "/v1/knowledge_bases/docs")["chunks"] == first
    ids = {d["id"] for d in get(url, "/v1/knowledge_bases/docs/documents")["data"]}
    assert ids == {str((docs / name).resolve()) for name in ("a.txt", "b.md", "sub/c.html")}


def test_ingest_reports_failures_and_exits_1(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    good = tmp_path / "good.txt"
    good.write_text("Some text.")
    assert run(url, "ingest", str(good), str(empty), "--kb", "k", "--create") == 1
    out, err = capsys.readouterr()
    assert "empty.txt: 400" in err
    assert "ingested 1 documents (1 chunks) into k" in out
    assert "1 failed" in out


def test_ingest_into_a_missing_kb_stops_before_uploading(url: str, tmp_path: Path) -> None:
    with pytest.raises(kb_cli.CliError, match="knowledge base `nope` does not exist"):
        run(url, "ingest", str(corpus(tmp_path)), "--kb", "nope")
    with pytest.raises(kb_cli.CliError, match="does not exist"):
        run(url, "ingest", str(tmp_path / "absent"), "--kb", "nope")
