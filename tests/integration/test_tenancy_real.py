"""Tenancy on the real stack: `ragway up --auth` (one vLLM CPU worker), through the OpenAI SDK.

A stack of this module's own (the session stack runs without auth). Keys are added to its key
file while it runs, as `ragway keys create` does; the gateway picks them up without a restart.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client.parser import text_string_to_metric_families

from ragway.cli import CHAT_MODEL
from ragway.stack import free_port
from server.tenancy.keys import KeyEntry, hash_key, read_entries, write_entries
from tests.integration.conftest import START_TIMEOUT, RunningStack, _pump

KEYS: dict[str, dict[str, Any]] = {
    "scoped": {"models": ["gpt-4o-mini"]},
    "reader": {"knowledge_bases": {"tenancy-docs": "read"}},
    "rpm2": {"limits": {"rpm": 2}},
    "tpm": {"limits": {"tpm": 1_000_000}},
    "tenant-a": {},
    "tenant-b": {},
}
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello"}]


@dataclass
class AuthStack:
    running: RunningStack
    admin_key: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.running.port}"

    def sdk(self, name: str | None, **kwargs: Any) -> openai.OpenAI:
        key = self.admin_key if name is None else f"sk-test-{name}"
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, **kwargs)

    def headers(self, name: str | None = None) -> dict[str, str]:
        key = self.admin_key if name is None else f"sk-test-{name}"
        return {"authorization": f"Bearer {key}"}

    def gateway_metric(self, name: str, labels: dict[str, str]) -> float:
        text = httpx.get(self.url + "/metrics", headers=self.headers(), timeout=30).text
        return sum(
            s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )


def _add_keys(path: Path) -> None:
    entries = [e for e in read_entries(path) if e.name not in KEYS]
    for name, spec in KEYS.items():
        entries.append(
            KeyEntry.model_validate({"name": name, "sha256": hash_key(f"sk-test-{name}"), **spec})
        )
    write_entries(path, entries)


@pytest.fixture(scope="module")
def auth_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthStack]:
    ragway = Path(sys.executable).with_name("ragway")
    ports = [free_port() for _ in range(3)]
    while len(set(ports)) < 3:
        ports = [free_port() for _ in range(3)]
    run_dir = tmp_path_factory.mktemp("ragway-auth-run")
    # ~3k-token prompts plus an answer must fit the context.
    argv = [str(ragway), "up", "--auth", "--run-dir", str(run_dir), "--max-model-len", "4096"]
    for flag, port in zip(("--port", "--chat-port", "--embedding-port"), ports, strict=True):
        argv += [flag, str(port)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    running = RunningStack(process, ports[0], ports[1], ports[2], run_dir)
    ready = threading.Event()
    threading.Thread(target=_pump, args=(process, running.output, ready), daemon=True).start()
    ready.wait(START_TIMEOUT)
    deadline = time.monotonic() + 30  # the banner's key comes a few lines after "ragway is up"
    while not any("Press Ctrl-C" in line for line in running.output):
        if process.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    found = [m for line in running.output if (m := re.search(r"\(shown once\): (\S+)", line))]
    if process.poll() is not None or not found:
        process.kill()
        pytest.fail("ragway up --auth did not come up:\n" + "\n".join(running.output[-40:]))
    stack = AuthStack(running, found[0].group(1))
    _add_keys(run_dir / "keys.yaml")
    deadline = time.monotonic() + 60
    while httpx.get(stack.url + "/v1/models", headers=stack.headers("tenant-b")).status_code != 200:
        assert time.monotonic() < deadline, "the gateway never picked up the new keys"
        time.sleep(0.5)
    yield stack
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=90) == 0


def away_from_minute_edge(seconds_needed: float) -> None:
    """Limits count in clock-aligned minutes: start a counting test with time left in one."""
    left = 60 - time.time() % 60
    if left < seconds_needed:
        time.sleep(left + 0.2)


def test_banner_example_and_keys(auth_stack: AuthStack) -> None:
    banner = "\n".join(auth_stack.running.output)
    assert f"Authorization: Bearer {auth_stack.admin_key}" in banner
    assert httpx.get(auth_stack.url + "/healthz").status_code == 200
    assert httpx.get(auth_stack.url + "/openapi.json").status_code == 401
    with pytest.raises(openai.AuthenticationError):
        auth_stack.sdk("nobody").models.list()
    no_key = httpx.get(auth_stack.url + "/v1/models")
    assert no_key.status_code == 401
    assert no_key.headers["www-authenticate"] == "Bearer"
    malformed = httpx.get(auth_stack.url + "/v1/models", headers={"authorization": "Token x y"})
    assert malformed.status_code == 401
    admin = auth_stack.sdk(None).chat.completions.create(
        model=CHAT_MODEL, messages=HELLO, max_tokens=8
    )
    assert admin.choices[0].message.content


def test_model_scope(auth_stack: AuthStack) -> None:
    scoped = auth_stack.sdk("scoped", max_retries=0)
    assert [m.id for m in scoped.models.list()] == ["gpt-4o-mini"]
    answer = scoped.chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_tokens=8)
    assert answer.choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError):
        scoped.chat.completions.create(model=CHAT_MODEL, messages=HELLO, max_tokens=8)
    everything = {m.id for m in auth_stack.sdk(None).models.list()}
    assert {CHAT_MODEL, "gpt-4o-mini", "all-minilm-l6-v2"} <= everything


def test_read_key_cannot_delete_a_document_admin_can(auth_stack: AuthStack) -> None:
    kb = auth_stack.url + "/v1/knowledge_bases"
    admin, reader = auth_stack.headers(), auth_stack.headers("reader")
    assert (
        httpx.post(kb, json={"name": "tenancy-docs"}, headers=admin, timeout=60).status_code == 200
    )
    added = httpx.post(f"{kb}/tenancy-docs/documents", headers=admin, timeout=120,
                       json={"id": "d1", "text": "Tenancy keeps tenants apart."})  # fmt: skip
    assert added.status_code == 200, added.text
    query = httpx.post(f"{kb}/tenancy-docs/query", json={"query": "tenants"}, headers=reader,
                       timeout=60)  # fmt: skip
    assert query.status_code == 200
    denied = httpx.delete(f"{kb}/tenancy-docs/documents/d1", headers=reader, timeout=30)
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "permission_denied"
    assert (
        httpx.delete(f"{kb}/tenancy-docs/documents/d1", headers=admin, timeout=30).status_code
        == 200
    )
    assert httpx.delete(f"{kb}/tenancy-docs", headers=reader, timeout=30).status_code == 403
    assert httpx.delete(f"{kb}/tenancy-docs", headers=admin, timeout=60).status_code == 200


def test_rpm_429_then_the_sdk_waits_and_succeeds(auth_stack: AuthStack) -> None:
    away_from_minute_edge(30)
    url, headers = auth_stack.url + "/v1/models", auth_stack.headers("rpm2")
    assert [httpx.get(url, headers=headers).status_code for _ in range(2)] == [200, 200]
    over = httpx.get(url, headers=headers)
    assert over.status_code == 429
    assert over.json()["error"]["code"] == "rate_limit_exceeded"
    for name in ("retry-after", "retry-after-ms", "x-ratelimit-limit-requests",
                 "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"):  # fmt: skip
        assert name in over.headers, name
    assert over.headers["x-ratelimit-remaining-requests"] == "0"
    started = time.monotonic()
    client = auth_stack.sdk("rpm2", max_retries=2)
    answer = client.chat.completions.create(model=CHAT_MODEL, messages=HELLO, max_tokens=4)
    assert answer.choices[0].message.content is not None
    assert time.monotonic() - started >= 1  # it waited for the next window


def _tokens(stack: AuthStack) -> float:
    return stack.gateway_metric("ragway_tenant_tokens_total", {"tenant": "tpm"})


def _wait_tokens_above(stack: AuthStack, before: float) -> float:
    deadline = time.monotonic() + 60
    while (now := _tokens(stack)) <= before:
        assert time.monotonic() < deadline, "tokens were never charged"
        time.sleep(0.2)
    return now


def test_tpm_counts_real_tokens_of_json_streams_and_cut_streams(auth_stack: AuthStack) -> None:
    away_from_minute_edge(45)
    client = auth_stack.sdk("tpm", max_retries=0)
    before = _tokens(auth_stack)
    answer = client.chat.completions.create(model=CHAT_MODEL, messages=HELLO, max_tokens=16)
    assert answer.usage is not None
    after_json = _wait_tokens_above(auth_stack, before)
    assert after_json - before == answer.usage.total_tokens
    stream = client.chat.completions.create(
        model=CHAT_MODEL, messages=HELLO, max_tokens=16, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    usage = [chunk.usage for chunk in stream if chunk.usage is not None]
    after_stream = _wait_tokens_above(auth_stack, after_json)
    assert after_stream - after_json == usage[-1].total_tokens
    # A stream the client cuts after a few chunks is charged too: no usage chunk ever came.
    with httpx.stream("POST", auth_stack.url + "/v1/chat/completions", timeout=120,
                      headers=auth_stack.headers("tpm"),
                      json={"model": CHAT_MODEL, "messages": HELLO, "max_tokens": 400,
                            "stream": True, "ignore_eos": True}) as cut:  # fmt: skip
        lines = 0
        for line in cut.iter_lines():
            lines += line.startswith("data: ")
            if lines >= 3:
                break
    after_cut = _wait_tokens_above(auth_stack, after_stream)
    assert 3 <= after_cut - after_stream < 400 + 200
    remaining = httpx.get(auth_stack.url + "/v1/models", headers=auth_stack.headers("tpm"))
    used = 1_000_000 - int(remaining.headers["x-ratelimit-remaining-tokens"])
    assert used >= after_cut - before  # the window holds what was charged


def _long_system_prompt() -> str:
    words = [
        "ragway",
        "routes",
        "requests",
        "to",
        "vllm",
        "workers",
        "and",
        "keeps",
        "each",
        "tenant",
        "apart",
    ]
    return " ".join(f"{words[i % len(words)]}{i % 97}" for i in range(1000))


def test_tenants_do_not_share_the_prefix_cache(auth_stack: AuthStack) -> None:
    port = auth_stack.running.chat_port
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": _long_system_prompt()},
        {"role": "user", "content": "Summarise in one word."},
    ]

    def hits() -> float:
        return auth_stack.running.worker_metric("vllm:prefix_cache_hits_total", port)

    def ask(tenant: str) -> None:
        answer = auth_stack.sdk(tenant).chat.completions.create(
            model=CHAT_MODEL, messages=messages, max_tokens=4
        )
        assert answer.usage is not None
        assert answer.usage.prompt_tokens > 2500

    def settled() -> float:
        """The counter once it has stopped moving (the engine publishes stats per step)."""
        last, deadline = hits(), time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(1.0)
            now = hits()
            if now == last:
                return now
            last = now
        return last

    ask("tenant-a")
    after_a = settled()
    ask("tenant-b")
    after_b = settled()
    assert after_b == after_a  # tenant b's first request found nothing of tenant a's
    ask("tenant-b")
    deadline = time.monotonic() + 30
    while hits() - after_b < 2000:  # its own second request hits its own cached prefix
        assert time.monotonic() < deadline, f"no prefix-cache hit: {hits() - after_b}"
        time.sleep(0.5)
