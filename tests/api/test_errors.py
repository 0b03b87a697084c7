"""Every failure leaves the gateway as an OpenAI error object with the right status."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.conftest import Harness

CHAT = {"model": "tiny-chat", "messages": [{"role": "user", "content": "x"}]}


def assert_openai_error(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    assert response.headers["x-request-id"]
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.parametrize(
    ("content", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (b"", None),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "tiny-chat"}', "messages"),
        (b'{"model": "tiny-chat", "messages": []}', "messages"),
        (b'{"model": "tiny-chat", "messages": "hi"}', "messages"),
        (b'{"model": "tiny-chat", "messages": [{"content": "x"}]}', "messages"),
        (b'{"model": 7, "messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "tiny-chat", "stream": "yes", "messages": [{"role": "user"}]}', "stream"),
    ],
)
async def test_malformed_chat_body_is_400(
    harness: Harness, content: bytes, param: str | None
) -> None:
    response = await harness.client.post("/v1/chat/completions", content=content)
    error = assert_openai_error(response, 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert harness.chat.received == []


async def test_unknown_model_is_404(harness: Harness) -> None:
    response = await harness.client.post("/v1/chat/completions", json={**CHAT, "model": "nope"})
    error = assert_openai_error(response, 404, "model_not_found")
    assert error["param"] == "model"


async def test_chat_model_on_embeddings_route_is_404(harness: Harness) -> None:
    response = await harness.client.post(
        "/v1/embeddings", json={"model": "tiny-chat", "input": "x"}
    )
    assert_openai_error(response, 404, "model_not_found")


@pytest.mark.parametrize("status", [400, 422, 500, 503])
@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_error_status_and_body_pass_through(
    harness: Harness, status: int, stream: bool
) -> None:
    harness.chat.status = status
    response = await harness.client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
    assert response.status_code == status
    assert response.content == harness.chat.error_body


@pytest.mark.parametrize(
    ("failure", "status", "code", "error_type"),
    [
        (httpx.ConnectError("refused"), 503, "upstream_unavailable", "upstream_unavailable"),
        (httpx.ReadTimeout("slow"), 504, "upstream_timeout", "upstream_timeout"),
        (httpx.RemoteProtocolError("junk"), 502, "bad_upstream_response", "upstream_bad_response"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_transport_failures_map_to_gateway_statuses(
    harness: Harness, failure: Exception, status: int, code: str, error_type: str, stream: bool
) -> None:
    harness.transport.failures["chat.test"] = failure
    response = await harness.client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
    assert_openai_error(response, status, code)
    assert harness.metric("ragway_upstream_errors_total", {"error_type": error_type}) == 1


async def test_down_worker_gives_503_not_404(harness: Harness) -> None:
    harness.chat.healthy = False
    await harness.wait_for(lambda ready: ready["kinds"]["chat"] is False)
    response = await harness.client.post("/v1/chat/completions", json=CHAT)
    assert_openai_error(response, 503, "upstream_unavailable")
    harness.chat.healthy = True
    await harness.wait_for(lambda ready: ready["kinds"]["chat"] is True)
    response = await harness.client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/v1/nothing", 404), ("GET", "/v1/chat/completions", 405)],
)
async def test_unknown_routes_and_methods(
    harness: Harness, method: str, path: str, status: int
) -> None:
    response = await harness.client.request(method, path)
    assert_openai_error(response, status)


async def test_oversized_body_is_413(harness: Harness) -> None:
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * (17 * 1024 * 1024)}]}
    response = await harness.client.post("/v1/chat/completions", json=big)
    assert_openai_error(response, 413, "payload_too_large")
