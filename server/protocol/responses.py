"""Responses API requests: only the fields ragway acts on; the rest is forwarded untouched."""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictBool, StrictStr

from server.protocol.common import OpenAIRequest


class ResponsesRequest(OpenAIRequest):
    model: str
    # Checked item by item in server/responses/items.py, so a 400 can name the bad item.
    input: Any
    stream: StrictBool | None = False
    # OpenAI stores responses unless told not to.
    store: StrictBool | None = True
    previous_response_id: StrictStr | None = Field(default=None, min_length=1, max_length=256)
    instructions: StrictStr | None = None
