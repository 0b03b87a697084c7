"""The Helm chart's `helm test` script, run for real: its auth checks (no key and a wrong key get
401) and its knowledge-base round trip (create, ingest, query, RAG chat with sources, delete),
against a gateway with auth on, served over HTTP by uvicorn, with fake workers behind it. There
is no cluster here; this is as close as it gets."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from prometheus_client import CollectorRegistry

from ragway.stack import answers, free_port
from server.app import create_app
from server.services.embeddings import TokenDecoder
from tests.api.conftest import settings_for_fakes
from tests.api.tenancy_support import key_of, write_key_file
from tests.fakes.worker import FakeWorker, HostRouter
from tests.helm.chart import render_set


def _script() -> str:
    (pod,) = render_set("defaults").of_kind("Pod")
    (container,) = pod["spec"]["containers"]
    assert container["command"][:2] == ["python", "-c"]
    script: str = container["command"][2]
    return script


@pytest.fixture
def served_gateway(tmp_path: Path, token_decoder: TokenDecoder) -> Iterator[tuple[str, FakeWorker]]:
    chat = FakeWorker(models=["tiny-chat"])
    transport = HostRouter()
    transport.add("chat.test", chat)
    transport.add("embed.test", FakeWorker(models=["tiny-embed"], kind="embedding"))
    keys = write_key_file(tmp_path / "keys.yaml", {"root": {"admin": True}})
    settings = settings_for_fakes(rag={"data_dir": str(tmp_path)}, auth={"keys_file": str(keys)})
    app = create_app(
        settings,
        upstream_transport=transport,
        registry=CollectorRegistry(),
        token_decoder=token_decoder,
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not answers(url + "/readyz"):
        assert thread.is_alive(), "the gateway did not start"
        assert time.monotonic() < deadline, "the gateway never got ready"
        time.sleep(0.05)
    yield url, chat
    server.should_exit = True
    thread.join(30)


ENV = {
    "RAGWAY_API_KEY": key_of("root"),
    "EXPECTED_MODELS": "tiny-chat,tiny-embed",
    "CHAT_MODEL": "tiny-chat",
    "EMBEDDING_MODEL": "tiny-embed",
}


def _run(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _script()],
        env={**ENV, "GATEWAY_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_helm_test_script_does_the_knowledge_base_round_trip(
    served_gateway: tuple[str, FakeWorker],
) -> None:
    done = _run(served_gateway[0])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "/v1/models with 'no key' 401" in done.stdout
    assert "/v1/models with 'sk-wrong-key' 401" in done.stdout
    assert "query 200 ['zephyr']" in done.stdout
    assert "rag chat 200 sources ['zephyr']" in done.stdout
    assert "knowledge-base round trip ok" in done.stdout


def test_the_helm_test_script_fails_when_rag_answers_without_sources(
    served_gateway: tuple[str, FakeWorker],
) -> None:
    url, chat = served_gateway
    chat.max_model_len = 30  # no room for any context: the answer comes without sources
    done = _run(url)
    assert done.returncode != 0
    assert "the RAG answer did not cite the document" in done.stderr
