"""Models list, health, readiness and metrics."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import Harness


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
