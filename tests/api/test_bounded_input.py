"""Bad input costs bounded work: list caps before validation, nesting depth, request ids."""

from __future__ import annotations

import json
import logging
import time

import pytest

from tests.api.conftest import Harness
from tests.api.test_errors import assert_openai_error

CHAT = {"model": "tiny-chat", "messages": [{"role": "user", "content": "x"}]}


def _nested(depth: int) -> object:
    value: object = 0
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/embeddings", {"model": "tiny-embed", "input": [None] * 200_000}, "input"),
        ("/v1/embeddings", {"model": "tiny-embed", "input": [1] + [None] * 200_000}, "input"),
        ("/v1/embeddings", {"model": "tiny-embed", "input": [[1] * 100] * 2000}, "input"),
        ("/v1/chat/completions", {"model": "tiny-chat", "messages": [None] * 100_000}, "messages"),
        ("/v1/completions", {"model": "tiny-chat", "prompt": ["x"] * 5000}, "prompt"),
    ],
)
async def test_long_lists_are_refused_before_validation(
    harness: Harness, path: str, body: dict[str, object], param: str
) -> None:
    started = time.perf_counter()
    response = await harness.client.post(path, json=body)
    error = assert_openai_error(response, 400, "too_many_items")
    assert error["param"] == param
    assert "limits.max_" in error["message"]
    assert time.perf_counter() - started < 5  # generous: CI is loaded; was 24 s at 1M items


async def test_bad_items_in_a_list_under_its_cap_give_one_error(harness: Harness) -> None:
    body = {"model": "tiny-embed", "input": [None] * 2048}
    error = assert_openai_error(await harness.client.post("/v1/embeddings", json=body), 400)
    assert error["param"] == "input"
    assert len(error["message"]) < 300


@pytest.mark.parametrize("depth", [70, 300, 1000])
async def test_deep_nesting_is_a_400_naming_the_limit(harness: Harness, depth: int) -> None:
    nested = "[" * depth + "0" + "]" * depth
    # Through an alias, so the body is re-encoded (orjson refuses to write > 254 levels).
    body = '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x", "extra": %s}]}'
    response = await harness.client.post("/v1/chat/completions", content=body % nested)
    error = assert_openai_error(response, 400, "too_deep")
    assert "64 levels" in error["message"]
    assert "limits.max_json_depth" in error["message"]


async def test_nesting_within_the_limit_is_forwarded(harness: Harness) -> None:
    message = {"role": "user", "content": "x", "x": _nested(50)}
    body = {"model": "gpt-4o-mini", "messages": [message]}
    response = await harness.client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text


async def test_large_body_is_parsed_off_the_loop_and_still_answers(harness: Harness) -> None:
    body = {**CHAT, "padding": "y" * (2 * 1024 * 1024)}
    response = await harness.client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "value",
    [b"\xc3\xa9t\xc3\xa9", b"a" * 129, b"has space", b"semi;colon", b"\x01"],
)
async def test_unacceptable_request_ids_are_replaced_and_logged(
    harness: Harness, value: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ragway.access")
    response = await harness.client.post(
        "/v1/chat/completions", json=CHAT, headers=[(b"x-request-id", value)]
    )
    assert response.status_code == 200, response.text
    generated = response.headers["x-request-id"]
    assert len(generated) == 32
    assert harness.chat.headers_seen[-1]["x-request-id"] == generated
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "ragway.access"]
    assert lines[-1]["request_id"] == generated
    assert lines[-1]["client_request_id"] == value.decode("latin-1")


async def test_plain_request_ids_are_kept(harness: Harness) -> None:
    value = "trace-01.A:b_c-" + "x" * 100
    response = await harness.client.post(
        "/v1/chat/completions", json=CHAT, headers={"x-request-id": value}
    )
    assert response.headers["x-request-id"] == value


async def test_an_error_inside_middleware_is_a_logged_openai_500(
    token_decoder: object, caplog: pytest.LogCaptureFixture
) -> None:
    """Starlette's ServerErrorMiddleware sits outside every user middleware, and the gateway's
    handler for `Exception` is its handler: even a middleware's failure leaves as JSON."""
    import httpx
    from asgi_lifespan import LifespanManager
    from prometheus_client import CollectorRegistry
    from starlette.types import Receive, Scope, Send

    from server.app import create_app
    from tests.api.conftest import settings_for_fakes
    from tests.fakes.worker import HostRouter

    class Broken:
        def __init__(self, app: object) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                raise RuntimeError("middleware bug")
            await self.app(scope, receive, send)  # type: ignore[operator]

    app = create_app(
        settings_for_fakes(workers=[]),
        upstream_transport=HostRouter(),
        registry=CollectorRegistry(),
        token_decoder=token_decoder,  # type: ignore[arg-type]
    )
    app.add_middleware(Broken)
    caplog.set_level(logging.ERROR, logger="ragway.errors")
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://ragway") as client:
            response = await client.get("/v1/models")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert any("unhandled error" in r.getMessage() for r in caplog.records)
