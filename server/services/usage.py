"""Token usage and timing from what workers send back, without re-encoding any of it.

Streams: ragway asks the worker for a usage chunk (`stream_options.include_usage`) even when
the client did not, so token metrics are never missing; that extra chunk is then taken out of
what the client sees, leaving its stream as the worker would have sent it to that client.
"""

from __future__ import annotations

from typing import Any

import orjson

from server.observability.record import RequestRecord
from server.upstream.sse import LF, split_events

_USAGE_KEY = b'"usage":'
# vLLM's usage chunk is the one with no choices.
_EMPTY_CHOICES = b'"choices":[]'


def _object_at(content: bytes, start: int) -> Any:
    """The JSON object that begins at `content[start]` ('{'), or None."""
    depth = 0
    in_string = False
    escaped = False
    for index in range(start, len(content)):
        byte = content[index]
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte == 0x7B:  # {
            depth += 1
        elif byte == 0x7D:  # }
            depth -= 1
            if depth == 0:
                try:
                    return orjson.loads(content[start : index + 1])
                except orjson.JSONDecodeError:
                    return None
    return None


def usage_of(content: bytes) -> Any:
    """The `usage` object of a completion body, found from the end (where vLLM puts it)
    without parsing the whole body."""
    key = content.rfind(_USAGE_KEY)
    if key < 0:
        return None
    start = content.find(b"{", key + len(_USAGE_KEY), key + len(_USAGE_KEY) + 4)
    if start < 0:
        return None
    # Usually a flat object of counts: parse up to its first "}" without walking the bytes.
    end = content.find(b"}", start)
    if end > 0 and content.find(b"{", start + 1, end) < 0:
        try:
            return orjson.loads(content[start : end + 1])
        except orjson.JSONDecodeError:
            pass
    return _object_at(content, start)


class StreamTap:
    """Sees every batch of whole events on its way to the client."""

    __slots__ = ("_line", "_record", "_strip")

    def __init__(self, record: RequestRecord, strip_usage: bool, line: bytes = LF):
        self._record = record
        self._strip = strip_usage
        self._line = line  # the stream's line ending (see server.upstream.sse)

    def __call__(self, events: bytes) -> bytes:
        if _EMPTY_CHOICES in events:
            events = self._usage_events(events)
        if events:
            self._record.chunk_sent()
        return events

    def _usage_events(self, events: bytes) -> bytes:
        kept = []
        for event in split_events(events, self._line):
            if _EMPTY_CHOICES in event and event.startswith(b"data: {"):
                try:
                    self._record.usage(orjson.loads(event[6:]).get("usage"))
                except orjson.JSONDecodeError:
                    pass
                else:
                    if self._strip:
                        continue
            kept.append(event)
        return (self._line + self._line).join(kept)
