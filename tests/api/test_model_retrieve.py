"""`GET /v1/models/{id}`: served models, aliases and RAG virtual models, each exactly as the
model list shows it; anything else is a 404 `model_not_found`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from server.app import create_app
from server.services.embeddings import TokenDecoder
from tests.api.conftest import Harness, settings_for_fakes
from tests.fakes.worker import FakeWorker, HostRouter
from tests.serving import served

HF_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture
async def gateway(tmp_path: Path, token_decoder: TokenDecoder) -> AsyncIterator[Harness]:
    chat = FakeWorker(models=["tiny-chat", HF_NAME])
    embed = FakeWorker(models=["tiny-embed"], kind="embedding")
    transport = HostRouter()
    transport.add("chat.test", chat)
    transport.add("embed.test", embed)
    registry = CollectorRegistry()
    virtual = {"support-bot": {"model": "gpt-4o-mini", "knowledge_base": "docs"}}
    settings = settings_for_fakes(rag={"data_dir": str(tmp_path), "virtual_models": virtual})
    app = create_app(
        settings, upstream_transport=transport, registry=registry, token_decoder=token_decoder
    )
    async with served(app) as client:
        await Harness(client, chat, embed, transport, registry).wait_for(
            lambda r: r["status"] == "ready"
        )
        yield Harness(client, chat, embed, transport, registry)


async def test_every_listed_model_is_retrievable_as_listed(gateway: Harness) -> None:
    listed = (await gateway.client.get("/v1/models")).json()["data"]
    ids = {card["id"] for card in listed}
    assert {"tiny-chat", HF_NAME, "gpt-4o-mini", "support-bot", "tiny-embed"} <= ids
    for card in listed:
        response = await gateway.client.get(f"/v1/models/{card['id']}")
        assert response.status_code == 200, card["id"]
        assert response.json() == card
        assert {"id", "object", "created", "owned_by"} <= set(card)
        assert card["object"] == "model"


async def test_alias_and_virtual_model_name_their_target(gateway: Harness) -> None:
    alias = (await gateway.client.get("/v1/models/gpt-4o-mini")).json()
    assert alias["id"] == "gpt-4o-mini"
    assert alias["root"] == "tiny-chat"
    assert alias["owned_by"] == "ragway"
    virtual = (await gateway.client.get("/v1/models/support-bot")).json()
    assert virtual["root"] == "tiny-chat"


async def test_unknown_model_is_404_model_not_found(gateway: Harness) -> None:
    for model_id in ("no-such-model", "org/no-such-model", "tiny-chat/extra"):
        response = await gateway.client.get(f"/v1/models/{model_id}")
        assert response.status_code == 404
        error = response.json()["error"]
        assert error["code"] == "model_not_found"
        assert error["type"] == "invalid_request_error"
        assert model_id in error["message"]


async def test_metrics_label_the_route_and_bound_the_model(gateway: Harness) -> None:
    await gateway.client.get("/v1/models/gpt-4o-mini")
    await gateway.client.get("/v1/models/made-up-1")
    await gateway.client.get("/v1/models/made-up-2")
    route = "/v1/models/{model_id:path}"
    found = {"route": route, "model": "gpt-4o-mini", "status": "200"}
    missing = {"route": route, "model": "unknown", "status": "404"}
    assert gateway.metric("ragway_requests_total", found) == 1
    assert gateway.metric("ragway_requests_total", missing) == 2
