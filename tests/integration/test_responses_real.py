"""The Responses API on the real stack (`ragway up`, two vLLM CPU workers): state shared by two
more gateway processes through a real redis-server, shown from the workers' own prompt token
counters; a gateway restarted over its embedded SQLite store; the SDK's typed stream; LangChain
on the Responses API; bad input as OpenAI 4xx."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from langchain_openai import ChatOpenAI
from openai.types.responses import ResponseCompletedEvent

from ragway.stack import free_port
from tests.integration.conftest import RunningStack
from tests.redis_server import RedisServer, running_redis

pytestmark = pytest.mark.stack
PROMPT_TOKENS = "vllm:prompt_tokens_total"
READY_DEADLINE = 180.0
TOKENS = 8


@dataclass
class Gateway:
    config: Path
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key="x", max_retries=0, timeout=120)

    def start(self) -> None:
        ragway = Path(sys.executable).with_name("ragway")
        env = {**os.environ, "RAGWAY_CONFIG_FILE": str(self.config)}
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [str(ragway), "gateway"], env=env, stdout=sink, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + READY_DEADLINE
        while not _ready(self.base_url.removesuffix("/v1") + "/readyz"):
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the gateway did not become ready"
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            # uvicorn shuts down gracefully, then re-raises the signal it caught (0.29+).
            assert self.process.wait(timeout=60) in {0, -signal.SIGTERM}

    def access(self, path: str) -> list[dict[str, Any]]:
        """The gateway's JSON access-log lines for `path`."""
        lines = []
        for line in self.log.read_text(errors="replace").splitlines():
            start = line.find('{"request_id"')
            if start >= 0:
                entry = json.loads(line[start:])
                if entry["path"] == path:
                    lines.append(entry)
        return lines


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def gateway(stack: RunningStack, where: Path, name: str, **settings: Any) -> Gateway:
    """A gateway over the stack's workers, configured as `ragway up` configures its own (same
    worker names), plus `settings`."""
    config = yaml.safe_load((stack.run_dir / "gateway.yaml").read_text())
    port = free_port()
    config.update(port=port, log_level="info", **settings)
    path = where / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return Gateway(path, port, where / f"{name}.log")


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def replicas(
    stack: RunningStack, redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, Gateway]]:
    where = tmp_path_factory.mktemp("replicas")
    pair = tuple(
        gateway(stack, where, f"replica-{n}", state={"redis_url": redis.url}) for n in "ab"
    )
    try:
        for replica in pair:
            replica.start()
        yield pair[0], pair[1]
    finally:
        for replica in pair:
            replica.stop()


def prompt_tokens(stack: RunningStack) -> dict[int, float]:
    return {port: stack.worker_metric(PROMPT_TOKENS, port) for port in stack.chat_ports}


def gained(stack: RunningStack, before: dict[int, float], tokens: int) -> dict[int, float]:
    """Each worker's prompt-token gain since `before`, once some worker shows `tokens` more
    (vLLM counts a request when it finishes, just before its answer is sent)."""
    deadline = time.monotonic() + 30
    while True:
        now = prompt_tokens(stack)
        delta = {port: now[port] - before[port] for port in now}
        if any(d >= tokens for d in delta.values()) or time.monotonic() > deadline:
            return delta
        time.sleep(0.2)


def test_follow_up_through_a_second_gateway_reaches_the_same_worker_with_the_history(
    stack: RunningStack, replicas: tuple[Gateway, Gateway]
) -> None:
    a, b = (r.client() for r in replicas)
    alone = a.responses.create(
        model="gpt-4o-mini", input="What is my name?", store=False, max_output_tokens=TOKENS
    )
    assert alone.usage is not None
    for n in range(3):
        before = prompt_tokens(stack)
        first = a.responses.create(
            model="gpt-4o-mini", input=f"My name is Ada {n}. Say hello.", store=True,
            max_output_tokens=TOKENS,
        )  # fmt: skip
        assert first.usage is not None
        worker_gain = gained(stack, before, first.usage.input_tokens)
        (served_first,) = [p for p, d in worker_gain.items() if d > 0]
        assert worker_gain[served_first] == first.usage.input_tokens
        before = prompt_tokens(stack)
        second = b.responses.create(
            model="gpt-4o-mini", input="What is my name?", previous_response_id=first.id,
            max_output_tokens=TOKENS,
        )  # fmt: skip
        assert second.usage is not None
        assert second.previous_response_id == first.id
        # From the workers' side: the same worker received the follow-up, and it was longer
        # than the first turn and than the question alone: the history came with it.
        worker_gain = gained(stack, before, second.usage.input_tokens)
        assert worker_gain == {
            port: (second.usage.input_tokens if port == served_first else 0.0)
            for port in stack.chat_ports
        }
        assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
        assert second.usage.input_tokens > alone.usage.input_tokens
        print(
            f"EVIDENCE turn1 worker :{served_first} input_tokens={first.usage.input_tokens} "
            f"turn2 via other gateway input_tokens={second.usage.input_tokens} "
            f"question alone={alone.usage.input_tokens} worker gains={worker_gain}",
            file=sys.stderr,
        )
        # Either gateway serves either stored turn.
        assert b.responses.retrieve(first.id).output_text == first.output_text
        assert a.responses.retrieve(second.id).output_text == second.output_text
    # Each gateway's access log names the worker; the follow-ups went where the first turns did.
    firsts = [e["worker"] for e in replicas[0].access("/v1/responses") if e["status"] == 200]
    seconds = [e["worker"] for e in replicas[1].access("/v1/responses") if e["status"] == 200]
    assert seconds == firsts[1:]  # the first line on gateway a is the stateless question


def test_a_restarted_gateway_still_has_its_embedded_store(
    stack: RunningStack, tmp_path: Path
) -> None:
    embedded = gateway(
        stack, tmp_path, "embedded", responses={"sqlite_path": str(tmp_path / "r.sqlite3")}
    )
    embedded.start()
    try:
        first = embedded.client().responses.create(
            model="gpt-4o-mini", input="Remember the word apricot.", max_output_tokens=TOKENS
        )
    finally:
        embedded.stop()
    embedded.start()
    try:
        client = embedded.client()
        again = client.responses.retrieve(first.id)
        assert again.id == first.id
        assert again.output_text == first.output_text
        follow = client.responses.create(
            model="gpt-4o-mini", input="Which word?", previous_response_id=first.id,
            max_output_tokens=TOKENS,
        )  # fmt: skip
        assert follow.usage is not None
        assert first.usage is not None
        assert follow.usage.input_tokens > first.usage.input_tokens
    finally:
        embedded.stop()


def test_stream_yields_typed_events_ending_with_completed_and_usage(stack: RunningStack) -> None:
    client = openai.OpenAI(base_url=stack.base_url, api_key="x", max_retries=0)
    events = list(
        client.responses.create(
            model="gpt-4o-mini", input="Name a colour.", stream=True, max_output_tokens=TOKENS
        )
    )
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created"
    assert "response.output_text.delta" in kinds
    last = events[-1]
    assert isinstance(last, ResponseCompletedEvent)
    assert last.response.usage is not None
    assert last.response.usage.output_tokens > 0
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == last.response.output_text
    assert client.responses.retrieve(last.response.id).output_text == text
    with client.responses.stream(
        model="gpt-4o-mini", input="Name a fruit.", max_output_tokens=TOKENS
    ) as stream:
        final = stream.get_final_response()
    assert final.output_text
    assert final.usage is not None


def test_langchain_on_the_responses_api(stack: RunningStack) -> None:
    llm = ChatOpenAI(
        model="gpt-4o-mini", base_url=stack.base_url, api_key="x", use_responses_api=True,
        max_tokens=TOKENS,
    )  # fmt: skip
    reply = llm.invoke("Name a colour.")
    assert reply.text
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["output_tokens"] > 0
    assert str(reply.response_metadata["id"]).startswith("resp_")
    chunks = list(llm.stream("Name a fruit."))
    assert len(chunks) > 1
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    assert whole.text
    assert whole.usage_metadata is not None
    # LangChain's own chaining: the next turn sends only the new message and the previous id.
    chained = ChatOpenAI(
        model="gpt-4o-mini", base_url=stack.base_url, api_key="x", use_responses_api=True,
        use_previous_response_id=True, max_tokens=TOKENS,
    )  # fmt: skip
    first = chained.invoke("My name is Ada.")
    second = chained.invoke([("human", "My name is Ada."), first, ("human", "And yours?")])
    assert second.text
    assert second.usage_metadata is not None
    assert first.usage_metadata is not None
    assert second.usage_metadata["input_tokens"] > first.usage_metadata["input_tokens"]


def test_bad_input_is_an_openai_4xx(stack: RunningStack) -> None:
    client = openai.OpenAI(base_url=stack.base_url, api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError) as unknown:
        client.responses.create(
            model="gpt-4o-mini", input="x", previous_response_id="resp_nope", max_output_tokens=2
        )
    assert unknown.value.body["param"] == "previous_response_id"  # type: ignore[index]
    bad_item: Any = [{"role": "user", "content": 5}]
    with pytest.raises(openai.BadRequestError) as malformed:
        client.responses.create(model="gpt-4o-mini", input=bad_item, max_output_tokens=2)
    assert malformed.value.body["param"] == "input[0].content"  # type: ignore[index]
    kept = client.responses.create(model="gpt-4o-mini", input="x", max_output_tokens=2)
    client.responses.delete(kept.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(kept.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(
            model="gpt-4o-mini", input="y", previous_response_id=kept.id, max_output_tokens=2
        )
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list(kept.id)
