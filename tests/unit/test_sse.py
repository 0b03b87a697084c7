from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
import sse_starlette.sse
from starlette.types import Message

from server.api.edge import EventStream
from server.upstream.sse import EventCutter, line_ending, split_events


@pytest.mark.parametrize("sep", [b"\n\n", b"\r\n\r\n", b"\r\r"])
def test_cutter_passes_whole_events_unchanged(sep: bytes) -> None:
    stream = b"data: 1" + sep + b"data: 2" + sep + b"data: [DONE]" + sep
    for size in (1, 3, 7, len(stream)):
        cutter = EventCutter()
        out = b"".join(cutter.feed(stream[i : i + size]) for i in range(0, len(stream), size))
        assert out == stream
        assert cutter.pending == b""
        assert cutter.saw_done


def test_cutter_holds_back_a_partial_event() -> None:
    cutter = EventCutter()
    assert cutter.feed(b"data: 1\n\ndata: 2") == b"data: 1\n\n"
    assert cutter.pending == b"data: 2"
    assert not cutter.saw_done
    assert cutter.feed(b"\n\n") == b"data: 2\n\n"


async def _events() -> AsyncIterator[bytes]:
    for i in range(3):
        yield b"data: %d\n\n" % i


async def _sent(response: EventStream) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await response._stream_response(send)
    return sent


async def test_event_stream_sends_without_a_cancel_scope_per_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_scope(*_: object, **__: object) -> None:
        raise AssertionError("a cancel scope was entered for an event")

    # The override must still be what sse-starlette calls for every event.
    assert "_send_with_timeout" in vars(sse_starlette.sse.EventSourceResponse)
    monkeypatch.setattr(anyio, "move_on_after", no_scope)  # what sse_starlette.sse calls
    sent = await _sent(EventStream(_events(), ping=0))
    bodies = [m["body"] for m in sent if m["type"] == "http.response.body"]
    assert bodies == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n", b""]


async def test_event_stream_keeps_a_send_timeout_when_one_is_set() -> None:
    sent = await _sent(EventStream(_events(), ping=0, send_timeout=5))
    assert [m["body"] for m in sent if m["type"] == "http.response.body"][-2:] == [
        b"data: 2\n\n",
        b"",
    ]


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b"data: 1\n", b"\n"),
        (b"data: 1\r\n", b"\r\n"),
        (b"data: 1\rdata", b"\r"),
        (b"data: 1\r", None),  # maybe the start of a CRLF
        (b"data: 1", None),
    ],
)
def test_line_ending_is_told_from_the_first_one(data: bytes, line: bytes | None) -> None:
    assert line_ending(data) == line


def test_crlf_split_at_every_byte_is_cut_on_crlf_boundaries() -> None:
    stream = b"data: 1\r\n\r\ndata: 2\r\n\r\n"
    cutter = EventCutter()
    out = [cutter.feed(stream[i : i + 1]) for i in range(len(stream))]
    assert [o for o in out if o] == [b"data: 1\r\n\r\n", b"data: 2\r\n\r\n"]
    assert cutter.line == b"\r\n"
    assert split_events(b"".join(out), cutter.line) == [b"data: 1", b"data: 2", b""]


def test_a_responses_stream_ends_with_its_completed_event_not_done() -> None:
    ends = (b"event: response.completed",)
    cutter = EventCutter(ends)
    delta = b'event: response.output_text.delta\ndata: {"delta":"event: response.completed\\n"}\n\n'
    assert cutter.feed(delta) == delta
    assert not cutter.saw_done  # the words in generated text are JSON-escaped, never a line
    completed = b'event: response.completed\ndata: {"response":{}}\n\n'
    assert cutter.feed(completed[:20]) == b""
    assert cutter.feed(completed[20:]) == completed
    assert cutter.saw_done
    plain = EventCutter()
    plain.feed(completed)
    assert not plain.saw_done
