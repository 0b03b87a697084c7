"""Server-sent events on the wire: re-cutting a byte stream at event boundaries, and the few
events ragway writes itself."""

from __future__ import annotations

from typing import Any

import orjson

DONE_EVENT = b"data: [DONE]\n\n"
_DONE = b"data: [DONE]"


def data_event(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _end_of_last_event(buffer: bytes) -> int:
    """Index just past the last complete event in `buffer`, 0 if there is none. SSE allows
    LF, CRLF and CR line endings; an event ends at a blank line."""
    end = 0
    for blank_line in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        found = buffer.rfind(blank_line)
        if found >= 0:
            end = max(end, found + len(blank_line))
    return end


def _starts_event(events: bytes, first_line: bytes) -> bool:
    # An event starts the buffer or follows a blank line; JSON data never holds a raw newline.
    return events.startswith(first_line) or b"\n\n" + first_line in events


class EventCutter:
    """Passes a byte stream through unchanged, but only in whole events.

    A network read can end mid-event. Holding the tail back until its blank line arrives means
    that whatever ragway writes after a failure starts on an event boundary, so a client never
    sees a half event glued to an error event. Nothing is parsed or re-encoded.
    """

    __slots__ = ("_ends", "_tail", "saw_done")

    def __init__(self, ends: tuple[bytes, ...] = ()) -> None:
        # Events that also end a stream, by their first line (the Responses API's last event).
        self._ends = ends
        self._tail = b""
        self.saw_done = False

    def feed(self, chunk: bytes) -> bytes:
        buffer = self._tail + chunk if self._tail else chunk
        end = _end_of_last_event(buffer)
        self._tail = buffer[end:]
        complete = buffer[:end]
        if complete and (
            complete.rstrip().endswith(_DONE)
            or any(_starts_event(complete, end) for end in self._ends)
        ):
            self.saw_done = True
        return complete

    @property
    def pending(self) -> bytes:
        """Bytes of an event that has not ended yet."""
        return self._tail
