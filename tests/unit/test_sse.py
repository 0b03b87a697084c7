from __future__ import annotations

import pytest

from server.upstream.sse import EventCutter


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
