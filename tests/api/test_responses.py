"""The Responses API in-process against a recording fake worker: what the worker receives
(stateless: the whole history, `store: false`, ragway's id), what the client gets and can fetch
again, streams, listing input items, usage and metrics, and every bad input as an OpenAI 4xx."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.api.conftest import Harness
from tests.api.test_errors import assert_openai_error

URL = "/v1/responses"


async def create(harness: Harness, **body: Any) -> dict[str, Any]:
    response = await harness.client.post(URL, json={"model": "gpt-4o-mini", **body})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


async def test_create_sends_a_stateless_request_and_stores_the_answer(harness: Harness) -> None:
    answer = await create(harness, input="Hi, I am Ada.", instructions="Be brief.")
    sent = harness.chat.received[-1]
    assert sent["model"] == "tiny-chat"
    assert sent["store"] is False
    assert "previous_response_id" not in sent
    assert sent["input"] == [user("Hi, I am Ada.")]
    assert sent["instructions"] == "Be brief."
    # The worker used ragway's id as the response's, so the client's id is the stored one.
    assert answer["id"] == sent["request_id"]
    assert answer["id"].startswith("resp_")
    assert answer["store"] is True
    assert answer["output"][0]["content"][0]["text"] == "Hello"
    fetched = await harness.client.get(f"{URL}/{answer['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == answer


async def test_previous_response_id_expands_the_whole_chain(harness: Harness) -> None:
    first = await create(harness, input="Hi, I am Ada.", instructions="Be brief.")
    second = await create(
        harness, input=[user("What is my name?")], previous_response_id=first["id"]
    )
    sent = harness.chat.received[-1]
    assert "previous_response_id" not in sent
    assert "instructions" not in sent  # OpenAI: instructions are not carried over
    assert sent["input"] == [user("Hi, I am Ada."), first["output"][0], user("What is my name?")]
    assert second["previous_response_id"] == first["id"]
    assert second["usage"]["input_tokens"] > first["usage"]["input_tokens"]
    await create(harness, input="And now?", previous_response_id=second["id"])
    third = harness.chat.received[-1]["input"]
    assert third == [*sent["input"], second["output"][0], user("And now?")]


async def test_store_false_is_answered_but_not_kept(harness: Harness) -> None:
    answer = await create(harness, input="x", store=False)
    assert answer["store"] is False
    missing = await harness.client.get(f"{URL}/{answer['id']}")
    assert_openai_error(missing, 404, "response_not_found")
    follow = await harness.client.post(
        URL, json={"model": "gpt-4o-mini", "input": "y", "previous_response_id": answer["id"]}
    )
    assert assert_openai_error(follow, 404)["param"] == "previous_response_id"


def sse_events(content: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in content.split(b"\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(b": ", 1) for line in block.split(b"\n"))
        events.append((lines[b"event"].decode(), orjson.loads(lines[b"data"])))
    return events


async def test_stream_relays_events_and_stores_the_completed_response(harness: Harness) -> None:
    first = await create(harness, input="Hi")
    response = await harness.client.post(
        URL,
        json={"model": "gpt-4o-mini", "input": "More", "stream": True,
              "previous_response_id": first["id"]},
    )  # fmt: skip
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.content)
    kinds = [kind for kind, _ in events]
    # The worker's events, in order, and nothing after the last: no error, no [DONE].
    assert kinds == ["response.created", "response.output_text.delta", "response.completed"]
    completed = events[-1][1]["response"]
    assert completed["previous_response_id"] == first["id"]
    assert completed["usage"]["output_tokens"] == 1
    fetched = (await harness.client.get(f"{URL}/{completed['id']}")).json()
    assert fetched == completed
    labels = {"model": "gpt-4o-mini"}
    assert harness.metric("ragway_completion_tokens_total", labels) == 2  # one per turn
    route = {"route": "/v1/responses", "model": "gpt-4o-mini", "status": "200"}
    assert harness.metric("ragway_requests_total", route) == 2


async def test_usage_counts_as_prompt_and_completion_tokens(harness: Harness) -> None:
    answer = await create(harness, input="Hi")
    labels = {"model": "gpt-4o-mini"}
    assert harness.metric("ragway_prompt_tokens_total", labels) == answer["usage"]["input_tokens"]
    assert harness.metric("ragway_completion_tokens_total", labels) == 1


async def test_delete_then_everything_about_it_is_404(harness: Harness) -> None:
    answer = await create(harness, input="x")
    deleted = await harness.client.delete(f"{URL}/{answer['id']}")
    assert deleted.status_code == 200
    assert deleted.json() == {"id": answer["id"], "object": "response.deleted", "deleted": True}
    for response in (
        await harness.client.get(f"{URL}/{answer['id']}"),
        await harness.client.delete(f"{URL}/{answer['id']}"),
        await harness.client.get(f"{URL}/{answer['id']}/input_items"),
    ):
        assert_openai_error(response, 404, "response_not_found")
    follow = await harness.client.post(
        URL, json={"model": "gpt-4o-mini", "input": "y", "previous_response_id": answer["id"]}
    )
    assert assert_openai_error(follow, 404)["param"] == "previous_response_id"
    assert len(harness.chat.received) == 1  # the follow-up never reached a worker


async def test_input_items_pages_like_openai(harness: Harness) -> None:
    items = [user(f"m{i}") for i in range(5)]
    answer = await create(harness, input=items)
    base = f"{URL}/{answer['id']}/input_items"
    page = (await harness.client.get(base, params={"limit": 2, "order": "asc"})).json()
    assert page["object"] == "list"
    assert [i["content"][0]["text"] for i in page["data"]] == ["m0", "m1"]
    assert page["has_more"] is True
    assert page["first_id"] == page["data"][0]["id"]
    rest = await harness.client.get(
        base, params={"order": "asc", "after": page["last_id"], "limit": 10}
    )
    assert [i["content"][0]["text"] for i in rest.json()["data"]] == ["m2", "m3", "m4"]
    assert rest.json()["has_more"] is False
    newest = (await harness.client.get(base)).json()  # default: desc, 20
    assert [i["content"][0]["text"] for i in newest["data"]] == ["m4", "m3", "m2", "m1", "m0"]
    assert all(i["type"] == "message" and i["id"] for i in newest["data"])


@pytest.mark.parametrize(
    ("params", "param"),
    [({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"), ({"limit": "101"}, "limit"),
     ({"order": "up"}, "order"), ({"after": "nope"}, "after")],
)  # fmt: skip
async def test_input_items_bad_query_is_400(
    harness: Harness, params: dict[str, str], param: str
) -> None:
    answer = await create(harness, input="x")
    response = await harness.client.get(f"{URL}/{answer['id']}/input_items", params=params)
    assert assert_openai_error(response, 400)["param"] == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "gpt-4o-mini"}, "input"),
        ({"model": "gpt-4o-mini", "input": []}, "input"),
        ({"model": "gpt-4o-mini", "input": 7}, "input"),
        ({"model": "gpt-4o-mini", "input": ["hi"]}, "input[0]"),
        ({"model": "gpt-4o-mini", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"model": "gpt-4o-mini", "input": [{"role": "user", "content": 5}]}, "input[0].content"),
        ({"model": "gpt-4o-mini", "input": [{"role": "user", "content": [{"type": "input_text"}]}]},
         "input[0].content[0]"),
        ({"model": "gpt-4o-mini", "input": [{"role": "user", "content": [{"type": "video"}]}]},
         "input[0].content[0]"),
        ({"model": "gpt-4o-mini", "input": [user("ok"), {"type": "function_call", "name": "f"}]},
         "input[1].call_id"),
        ({"model": "gpt-4o-mini", "input": [{"type": "function_call_output", "call_id": "c"}]},
         "input[0].output"),
        ({"model": "gpt-4o-mini", "input": [{"type": "item_reference", "id": "x"}]},
         "input[0].type"),
        ({"model": "gpt-4o-mini", "input": "x", "previous_response_id": 5},
         "previous_response_id"),
        ({"model": "gpt-4o-mini", "input": "x", "stream": "yes"}, "stream"),
    ],
)  # fmt: skip
async def test_malformed_requests_are_400_naming_the_param(
    harness: Harness, body: dict[str, Any], param: str
) -> None:
    response = await harness.client.post(URL, json=body)
    assert assert_openai_error(response, 400)["param"] == param
    assert harness.chat.received == []


async def test_unknown_ids_are_404(harness: Harness) -> None:
    for response in (
        await harness.client.get(f"{URL}/resp_nope"),
        await harness.client.delete(f"{URL}/resp_nope"),
        await harness.client.get(f"{URL}/resp_nope/input_items"),
        await harness.client.post(
            URL, json={"model": "gpt-4o-mini", "input": "x", "previous_response_id": "resp_nope"}
        ),
    ):
        assert_openai_error(response, 404, "response_not_found")


async def test_unknown_model_is_404_and_worker_errors_pass_through(harness: Harness) -> None:
    response = await harness.client.post(URL, json={"model": "nope", "input": "x"})
    assert_openai_error(response, 404, "model_not_found")
    harness.chat.status = 400
    relayed = await harness.client.post(URL, json={"model": "gpt-4o-mini", "input": "x"})
    assert relayed.status_code == 400
    assert relayed.content == harness.chat.error_body


async def test_bodies_over_the_limits_are_refused(harness: Harness) -> None:
    body = {"model": "gpt-4o-mini", "input": "x" * (2 * 1024 * 1024)}
    assert_openai_error(await harness.client.post(URL, json=body), 400, "input_too_large")
    assert harness.chat.received == []


async def test_a_stream_that_breaks_ends_with_an_error_event(harness: Harness) -> None:
    created = b'event: response.created\ndata: {"type":"response.created","response":{}}\n\n'
    harness.chat.stream_events = [created]  # and then the worker hangs up
    response = await harness.client.post(
        URL, json={"model": "gpt-4o-mini", "input": "x", "stream": True}
    )
    assert response.content.startswith(created)
    error = orjson.loads(response.content[len(created) :].split(b"\n\n")[0][6:])
    assert error["error"]["code"] == "bad_upstream_response"
