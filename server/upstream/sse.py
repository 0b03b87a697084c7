"""Server-sent events on the wire: the one place that knows how events are framed.

SSE allows LF, CRLF and CR line endings, and an event ends at a blank line. A worker picks one;
ragway learns it from the stream's first line ending (`line_ending`) and then uses that
framing everywhere: cutting the stream at event boundaries (`EventCutter`), splitting a batch
of events (`split_events`, used by the usage tap and RAG's sources step), and writing its own
events (`data_event`, `done_event`) and pings, so the client sees one framing throughout.
"""

from __future__ import annotations

from typing import Any

import orjson

LF = b"\n"
_DONE = b"data: [DONE]"


def line_ending(data: bytes) -> bytes | None:
    """The line ending `data` uses (LF, CRLF or CR), from its first one; None while it cannot be
    told yet (no line ending so far, or a CR that may be the start of a CRLF)."""
    lf = data.find(b"\n")
    cr = data.find(b"\r", 0, lf if lf >= 0 else len(data))
    if cr < 0:
        return LF if lf >= 0 else None
    if cr + 1 == len(data):
        return None
    return b"\r\n" if data[cr + 1] == 0x0A else b"\r"


def end_of_last_event(buffer: bytes, line: bytes) -> int:
    """Index just past the last complete event in `buffer` (framed with `line` endings), 0 if
    there is none."""
    found = buffer.rfind(line + line)
    return found + 2 * len(line) if found >= 0 else 0


def split_events(events: bytes, line: bytes) -> list[bytes]:
    """Whole events as cut by `EventCutter`, each without its blank line; the last item is what
    follows the last blank line (empty for a whole batch)."""
    return events.split(line + line)


def data_event(payload: Any, line: bytes = LF) -> bytes:
    return b"data: " + orjson.dumps(payload) + line + line


def done_event(line: bytes = LF) -> bytes:
    return _DONE + line + line


DONE_EVENT = done_event()


def _starts_event(events: bytes, first_line: bytes, line: bytes) -> bool:
    # An event starts the buffer or follows a blank line; JSON data never holds a raw newline.
    head = first_line + line
    return events.startswith(head) or line + line + head in events


class EventCutter:
    """Passes a byte stream through unchanged, but only in whole events.

    A network read can end mid-event. Holding the tail back until its blank line arrives means
    that whatever ragway writes after a failure starts on an event boundary, so a client never
    sees a half event glued to an error event. Nothing is parsed or re-encoded.
    """

    __slots__ = ("_ends", "_known", "_tail", "line", "saw_done")

    def __init__(self, ends: tuple[bytes, ...] = ()) -> None:
        # Events that also end a stream, by their first line (the Responses API's last event).
        self._ends = ends
        self._tail = b""
        self.saw_done = False
        # The stream's line ending; LF until its first line ending is seen.
        self.line: bytes = LF
        self._known = False

    def feed(self, chunk: bytes) -> bytes:
        buffer = self._tail + chunk if self._tail else chunk
        if not self._known:
            found = line_ending(buffer)
            if found is None:
                self._tail = buffer
                return b""
            self.line, self._known = found, True
        end = end_of_last_event(buffer, self.line)
        self._tail = buffer[end:]
        complete = buffer[:end]
        if complete and (
            complete.rstrip().endswith(_DONE)
            or any(_starts_event(complete, end, self.line) for end in self._ends)
        ):
            self.saw_done = True
        return complete

    @property
    def pending(self) -> bytes:
        """Bytes of an event that has not ended yet."""
        return self._tail
