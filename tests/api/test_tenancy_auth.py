"""Keys, scopes and tenant isolation at the edge, against fake workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.services.embeddings import TokenDecoder
from server.tenancy.principal import tenant_salt
from tests.api.conftest import Harness
from tests.api.tenancy_support import auth, auth_gateway, key_of, write_key_file

CHAT = {"model": "tiny-chat", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def gw(tmp_path: Path, token_decoder: TokenDecoder) -> AsyncIterator[Harness]:
    async with auth_gateway(tmp_path, token_decoder) as harness:
        yield harness


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer wrong-key",
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "bearer " + "x" * 5000,
        b"Bearer \xff\xfe",
        key_of("root"),  # the key without its scheme
    ],
)
async def test_missing_wrong_or_malformed_keys_are_401(
    gw: Harness, header: str | bytes | None
) -> None:
    raw = header.encode() if isinstance(header, str) else header
    headers = [] if raw is None else [(b"authorization", raw)]
    for method, path in [("POST", "/v1/chat/completions"), ("GET", "/v1/models"),
                         ("GET", "/openapi.json"), ("GET", "/docs"),
                         ("DELETE", "/v1/knowledge_bases/docs")]:  # fmt: skip
        response = await gw.client.request(method, path, json=CHAT, headers=headers)
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "invalid_api_key"
    assert gw.chat.received == []
    rejected = gw.metric(
        "ragway_tenant_rejections_total",
        {"tenant": "unauthenticated", "reason": "invalid_api_key"},
    )
    assert rejected == 5


async def test_probes_are_open_and_metrics_need_an_admin_key(gw: Harness) -> None:
    assert (await gw.client.get("/healthz")).status_code == 200
    assert (await gw.client.get("/readyz")).status_code in (200, 503)
    assert (await gw.client.get("/metrics")).status_code == 401
    assert (await gw.client.get("/metrics", headers=auth("reader"))).status_code == 403
    assert (await gw.client.get("/metrics", headers=auth("root"))).status_code == 200
    assert (await gw.client.get("/openapi.json", headers=auth("reader"))).status_code == 200


async def test_model_scope_and_filtered_model_list(gw: Harness) -> None:
    ok = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth("reader"))
    assert ok.status_code == 200
    # The alias of a served model the key names is allowed; the reverse is not.
    aliased = {**CHAT, "model": "gpt-4o-mini"}
    assert (await gw.client.post("/v1/chat/completions", json=aliased,
                                 headers=auth("reader"))).status_code == 200  # fmt: skip
    assert (await gw.client.post("/v1/chat/completions", json=aliased,
                                 headers=auth("alias-only"))).status_code == 200  # fmt: skip
    denied = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth("alias-only"))
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "permission_denied"
    embed = {"model": "tiny-embed", "input": "x"}
    assert (await gw.client.post("/v1/embeddings", json=embed,
                                 headers=auth("reader"))).status_code == 403  # fmt: skip
    await gw.wait_for(lambda r: r.get("status") == "ready")
    listed = await gw.client.get("/v1/models", headers=auth("alias-only"))
    assert [m["id"] for m in listed.json()["data"]] == ["gpt-4o-mini"]
    everything = await gw.client.get("/v1/models", headers=auth("root"))
    assert {"tiny-chat", "tiny-embed", "gpt-4o-mini"} <= {
        m["id"] for m in everything.json()["data"]
    }


async def test_knowledge_base_scopes(gw: Harness) -> None:
    reader, writer = auth("reader"), auth("writer")
    assert (await gw.client.delete("/v1/knowledge_bases/docs/documents/a",
                                   headers=reader)).status_code == 403  # fmt: skip
    assert (await gw.client.post("/v1/knowledge_bases/docs/documents", json={"text": "x"},
                                 headers=reader)).status_code == 403  # fmt: skip
    assert (await gw.client.delete("/v1/knowledge_bases/docs", headers=writer)).status_code == 403
    create = await gw.client.post("/v1/knowledge_bases", json={"name": "docs"}, headers=writer)
    assert create.status_code == 403
    assert (await gw.client.post("/v1/knowledge_bases/other/query", json={"query": "x"},
                                 headers=reader)).status_code == 403  # fmt: skip
    # RAG through extra_body.rag needs read on that knowledge base.
    rag = {**CHAT, "rag": {"knowledge_base": "secret"}}
    denied = await gw.client.post("/v1/chat/completions", json=rag, headers=reader)
    assert denied.status_code == 403
    assert "secret" in denied.json()["error"]["message"]


async def test_each_tenant_gets_its_own_cache_salt(gw: Harness) -> None:
    for name in ("reader", "root", "reader", "shared"):
        body = {**CHAT, "cache_salt": "chosen-by-client"}
        response = await gw.client.post("/v1/chat/completions", json=body, headers=auth(name))
        assert response.status_code == 200
    salts = [body.get("cache_salt") for body in gw.chat.received]
    assert salts[0] == salts[2] != salts[1]
    assert "chosen-by-client" not in salts[:3]
    assert salts[3] == "chosen-by-client"  # a shared-cache key keeps what it sends


async def test_guarded_fields_and_the_token_cap(gw: Harness) -> None:
    body = {**CHAT, "priority": 5}
    refused = await gw.client.post("/v1/chat/completions", json=body, headers=auth("reader"))
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "priority"
    for name in ("root", "scheduler"):
        ok = await gw.client.post("/v1/chat/completions", json=body, headers=auth(name))
        assert ok.status_code == 200
    over = await gw.client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 17},
                                headers=auth("capped"))  # fmt: skip
    assert over.status_code == 400
    assert over.json()["error"]["param"] == "max_tokens"
    ok = await gw.client.post("/v1/chat/completions", json=CHAT, headers=auth("capped"))
    assert ok.status_code == 200
    assert gw.chat.received[-1]["max_tokens"] == 16


async def test_key_file_changes_apply_without_restart(
    tmp_path: Path, token_decoder: TokenDecoder
) -> None:
    path = write_key_file(tmp_path / "keys.yaml", {"a": {}, "b": {}})
    async with auth_gateway(tmp_path, token_decoder, keys_file=path,
                            auth={"reload_interval": 0.05}) as gw:  # fmt: skip
        assert (await gw.client.get("/v1/models", headers=auth("b"))).status_code == 200
        write_key_file(path, {"a": {}})
        for _ in range(200):
            if (await gw.client.get("/v1/models", headers=auth("b"))).status_code == 401:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the revoked key still works")
        assert (await gw.client.get("/v1/models", headers=auth("a"))).status_code == 200
        path.write_text("keys: [{name: a, sha256: nothex}]\n")  # a bad edit keeps the old keys
        await asyncio.sleep(0.3)
        assert (await gw.client.get("/v1/models", headers=auth("a"))).status_code == 200


async def test_the_salt_is_spliced_into_the_raw_body(gw: Harness) -> None:
    raw = b'{"model": "tiny-chat", "messages": [{"role": "user", "content": "hi"}]}  \n'
    response = await gw.client.post("/v1/chat/completions", content=raw, headers=auth("reader"))
    assert response.status_code == 200
    sent = gw.chat.raw_bodies[-1]
    assert sent.startswith(raw.rstrip()[:-1])  # the client's bytes, unchanged, then the salt
    assert gw.chat.received[-1]["cache_salt"] == tenant_salt("reader")
