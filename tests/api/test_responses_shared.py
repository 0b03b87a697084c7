"""The Responses API across gateway replicas and tenants, in-process: two gateways sharing a
real redis-server in front of two recording fake workers; a follow-up lands on the worker that
served the previous turn; owners; a dead Redis; the store's bounds; RAG on Responses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from server.app import create_app
from server.services.embeddings import TokenDecoder
from tests.api.conftest import settings_for_fakes
from tests.api.rag_gateway import add_docs, rag_gateway
from tests.api.tenancy_support import key_of, write_key_file
from tests.api.test_errors import assert_openai_error
from tests.api.test_responses import sse_events, user
from tests.fakes.worker import FakeWorker, HostRouter
from tests.redis_server import RedisServer
from tests.serving import served

URL = "/v1/responses"
HOSTS = ("chat-a.test", "chat-b.test")


TENANTS: dict[str, dict[str, Any]] = {"t1": {}, "t2": {}}


def as_tenant(tenant: str) -> dict[str, str]:
    """The headers of a request made with that tenant's API key (auth is on)."""
    return {"authorization": f"Bearer {key_of(tenant)}"}


@dataclass
class Replicas:
    a: httpx.AsyncClient
    b: httpx.AsyncClient
    workers: dict[str, FakeWorker]
    transport: HostRouter

    def served_by(self, response_id: str) -> str:
        """Which fake worker answered `response_id` (ragway sends its id as `request_id`)."""
        (host,) = [
            h for h, w in self.workers.items() if any(
                r.get("request_id") == response_id for r in w.received)
        ]  # fmt: skip
        return host

    def received(self, response_id: str) -> dict[str, Any]:
        worker = self.workers[self.served_by(response_id)]
        return next(r for r in worker.received if r.get("request_id") == response_id)


async def create(client: httpx.AsyncClient, tenant: str = "t1", **body: Any) -> dict[str, Any]:
    response = await client.post(
        URL, json={"model": "gpt-4o-mini", **body}, headers=as_tenant(tenant)
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def replicas(
    stack: AsyncExitStack,
    token_decoder: TokenDecoder,
    redis_url: str,
    keys_dir: Path,
    **overrides: Any,
) -> Replicas:
    workers = {host: FakeWorker(models=["tiny-chat"]) for host in HOSTS}
    transport = HostRouter()
    for host, worker in workers.items():
        transport.add(host, worker)
    settings = settings_for_fakes(
        workers=[{"url": f"http://{h}", "name": f"chat-{i}"} for i, h in enumerate(HOSTS)],
        state={"redis_url": redis_url, "timeout": 0.3, "connect_timeout": 0.3},
        retries={"backoff": 0},
        auth={"keys_file": str(write_key_file(keys_dir / "keys.yaml", TENANTS))},
        **overrides,
    )
    clients = [
        await stack.enter_async_context(
            served(
                create_app(
                    settings,
                    upstream_transport=transport,
                    registry=CollectorRegistry(),
                    token_decoder=token_decoder,
                )
            )
        )
        for _ in range(2)
    ]
    return Replicas(clients[0], clients[1], workers, transport)


@pytest.fixture
async def shared(
    redis_server: RedisServer, token_decoder: TokenDecoder, tmp_path: Path
) -> AsyncIterator[Replicas]:
    async with AsyncExitStack() as stack:
        yield await replicas(stack, token_decoder, redis_server.url, tmp_path)


async def test_a_follow_up_through_another_replica_gets_the_history_on_the_same_worker(
    shared: Replicas,
) -> None:
    for n in range(6):
        first = await create(shared.a, input=f"Hi, I am user {n}.")
        second = await create(shared.b, input="Who am I?", previous_response_id=first["id"])
        assert shared.served_by(second["id"]) == shared.served_by(first["id"])
        sent = shared.received(second["id"])
        assert sent["input"] == [user(f"Hi, I am user {n}."), first["output"][0], user("Who am I?")]
        # Either replica can fetch either turn.
        assert (await shared.a.get(f"{URL}/{second['id']}", headers=as_tenant("t1"))
                ).json() == second  # fmt: skip
    # Six conversations, each kept on one worker: a random choice would not (1 in 64).


async def test_when_the_previous_worker_fails_another_gets_the_whole_history(
    shared: Replicas,
) -> None:
    first = await create(shared.a, input="Hi, I am Ada.")
    gone = shared.served_by(first["id"])
    shared.transport.failures[gone] = httpx.ConnectError("connection refused")
    second = await create(shared.b, input="Who am I?", previous_response_id=first["id"])
    assert shared.served_by(second["id"]) != gone
    assert shared.received(second["id"])["input"][:2] == [user("Hi, I am Ada."),
                                                          first["output"][0]]  # fmt: skip


async def test_another_tenant_sees_nothing(shared: Replicas) -> None:
    mine = await create(shared.a, tenant="t1", input="secret")
    other = as_tenant("t2")
    for response in (
        await shared.b.get(f"{URL}/{mine['id']}", headers=other),
        await shared.b.get(f"{URL}/{mine['id']}/input_items", headers=other),
        await shared.b.delete(f"{URL}/{mine['id']}", headers=other),
        await shared.b.post(
            URL,
            headers=other,
            json={"model": "gpt-4o-mini", "input": "x", "previous_response_id": mine["id"]},
        ),
    ):
        assert_openai_error(response, 404, "response_not_found")
    kept = await shared.a.get(f"{URL}/{mine['id']}", headers=as_tenant("t1"))
    assert kept.status_code == 200


async def test_a_dead_redis_is_a_503_in_openai_shape(
    shared: Replicas, redis_server: RedisServer
) -> None:
    first = await create(shared.a, input="x")
    redis_server.kill()
    headers = as_tenant("t1")
    for response in (
        await shared.b.get(f"{URL}/{first['id']}", headers=headers),
        await shared.b.post(
            URL,
            headers=headers,
            json={"model": "gpt-4o-mini", "input": "y", "previous_response_id": first["id"]},
        ),
        await shared.b.post(URL, headers=headers, json={"model": "gpt-4o-mini", "input": "y"}),
    ):
        assert_openai_error(response, 503, "response_store_unavailable")
    # Not storing needs no store.
    unstored = {"model": "gpt-4o-mini", "input": "y", "store": False}
    assert (await shared.a.post(URL, headers=headers, json=unstored)).status_code == 200


async def test_chain_depth_and_stored_size_are_bounded(
    redis_server: RedisServer, token_decoder: TokenDecoder, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        r = await replicas(
            stack, token_decoder, redis_server.url, tmp_path,
            responses={"max_chain_depth": 2, "max_stored_bytes": 2048},
        )  # fmt: skip
        one = await create(r.a, input="1")
        two = await create(r.a, input="2", previous_response_id=one["id"])
        three = await create(r.a, input="3", previous_response_id=two["id"])
        too_long = await r.a.post(
            URL, headers=as_tenant("t1"),
            json={"model": "gpt-4o-mini", "input": "4", "previous_response_id": three["id"]},
        )  # fmt: skip
        assert assert_openai_error(too_long, 400, "conversation_too_long")["param"] == (
            "previous_response_id"
        )
        # The input fits, the whole stored response does not: answered, not stored.
        big = await create(r.a, input="x" * 1900)
        missing = await r.a.get(f"{URL}/{big['id']}", headers=as_tenant("t1"))
        assert_openai_error(missing, 404)


QUESTION = "What is the product code of the Zephyr router?"


@pytest.fixture
async def rag(tmp_path: Path, token_decoder: TokenDecoder) -> AsyncIterator[Any]:
    async with rag_gateway(tmp_path, token_decoder) as harness:
        await add_docs(harness, "docs", {"zephyr": "The Zephyr router product code is QX-4471-ZT.",
                                         "bananas": "Bananas are yellow."})  # fmt: skip
        yield harness


def context_items(sent: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in sent["input"] if i.get("role") == "system"]


async def test_rag_virtual_model_on_responses(rag: Any) -> None:
    response = await rag.client.post(URL, json={"model": "support-bot", "input": QUESTION})
    assert response.status_code == 200, response.text
    sent = rag.chat.received[-1]
    assert "rag" not in sent
    assert sent["model"] == "tiny-chat"
    (context,) = context_items(sent)
    assert "QX-4471-ZT" in context["content"]
    assert sent["input"][0]["role"] == "system"
    assert sent["input"][-1] == user(QUESTION)
    answer = response.json()
    assert answer["sources"][0]["document_id"] == "zephyr"
    assert response.headers["x-ragway-sources"] == ",".join(s["id"] for s in answer["sources"])
    # The stored turn keeps the client's input, not the injected context: the next turn gets
    # one fresh context message, not one per earlier turn.
    follow = await rag.client.post(
        URL, json={"model": "support-bot", "input": "And the bananas?",
                   "previous_response_id": answer["id"]},
    )  # fmt: skip
    assert follow.status_code == 200
    assert len(context_items(rag.chat.received[-1])) == 1
    assert (await rag.client.get(f"{URL}/{answer['id']}")).json()["sources"] == answer["sources"]


async def test_rag_extra_body_on_a_responses_stream(rag: Any) -> None:
    body = {"model": "gpt-4o-mini", "input": QUESTION, "stream": True,
            "rag": {"knowledge_base": "docs", "top_k": 1}}  # fmt: skip
    response = await rag.client.post(URL, json=body)
    assert response.status_code == 200
    (context,) = context_items(rag.chat.received[-1])
    assert "QX-4471-ZT" in context["content"]
    kind, last = sse_events(response.content)[-1]
    assert kind == "response.completed"
    assert [s["document_id"] for s in last["response"]["sources"]] == ["zephyr"]
    assert response.headers["x-ragway-sources"] == last["response"]["sources"][0]["id"]


async def test_rag_unknown_knowledge_base_is_404(rag: Any) -> None:
    body = {"model": "gpt-4o-mini", "input": "x", "rag": {"knowledge_base": "nope"}}
    response = await rag.client.post(URL, json=body)
    assert_openai_error(response, 404, "knowledge_base_not_found")
