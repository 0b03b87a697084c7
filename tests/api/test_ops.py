"""Models list, health, readiness and metrics."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from server.app import create_app
from server.services.embeddings import TokenDecoder
from tests.api.conftest import Harness, settings_for_fakes
from tests.fakes.worker import FakeWorker, HostRouter
from tests.serving import served


async def test_models_are_the_union_plus_aliases(harness: Harness) -> None:
    body = (await harness.client.get("/v1/models")).json()
    assert body["object"] == "list"
    ids = {card["id"]: card for card in body["data"]}
    assert set(ids) == {"tiny-chat", "tiny-embed", "gpt-4o-mini", "text-embedding-3-small"}
    assert ids["tiny-chat"]["owned_by"] == "fake"  # the worker's own description
    assert ids["gpt-4o-mini"]["root"] == "tiny-chat"
    assert all(card["object"] == "model" for card in body["data"])


async def test_health_and_readiness(harness: Harness) -> None:
    assert (await harness.client.get("/healthz")).json() == {"status": "ok"}
    ready = await harness.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["kinds"] == {"chat": True, "embedding": True}
    harness.embed.healthy = False
    await harness.wait_for(lambda r: r["status"] == "unready")
    ready = await harness.client.get("/readyz")
    assert ready.status_code == 503
    down = [w for w in ready.json()["workers"] if not w["up"]]
    assert [w["id"] for w in down] == ["embed-0"]
    assert down[0]["reason"]


async def test_metrics_count_requests_by_route_model_status(harness: Harness) -> None:
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}
    for _ in range(2):
        await harness.client.post("/v1/chat/completions", json=chat)
    await harness.client.post("/v1/chat/completions", json={**chat, "model": "no-such-model"})
    text = (await harness.client.get("/metrics")).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    route = ("route", "/v1/chat/completions")
    assert (
        samples[("ragway_requests_total", (("model", "gpt-4o-mini"), route, ("status", "200")))]
        == 2
    )
    assert samples[("ragway_requests_total", (("model", "unknown"), route, ("status", "404")))] == 1
    count_key = ("ragway_request_duration_seconds_count", (("model", "gpt-4o-mini"), route))
    assert samples[count_key] == 2
    assert samples[("ragway_worker_up", (("kind", "chat"), ("worker", "chat-0")))] == 1


async def test_a_worker_that_comes_up_is_probed_at_the_down_interval(
    token_decoder: TokenDecoder,
) -> None:
    """Probes of every worker every 30 s, but a worker that is down (here: never up) is
    probed every `down_interval` (0.05 s), so it is routed to soon after it comes up."""
    chat = FakeWorker(models=["tiny-chat"])
    chat.healthy = False
    transport = HostRouter()
    transport.add("chat.test", chat)
    transport.add("embed.test", FakeWorker(models=["tiny-embed"], kind="embedding"))
    settings = settings_for_fakes(health={"interval": 30, "down_interval": 0.05, "timeout": 1})
    app = create_app(settings, upstream_transport=transport, token_decoder=token_decoder)
    async with served(app) as client:
        ready = (await client.get("/readyz")).json()
        assert ready["kinds"]["chat"] is False
        chat.healthy = True
        for _ in range(500):  # a generous deadline; the start-up probe alone would take 30 s
            if (await client.get("/readyz")).json()["kinds"]["chat"]:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the chat worker was not probed again within 10 s")
        chat_body = {"model": "tiny-chat", "messages": [{"role": "user", "content": "x"}]}
        assert (await client.post("/v1/chat/completions", json=chat_body)).status_code == 200
