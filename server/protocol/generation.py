"""Chat and text completion requests."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, StrictBool

from server.protocol.common import OpenAIRequest


class ChatMessage(OpenAIRequest):
    # Roles and content shapes (strings, content-part arrays, tool calls) are the worker's to
    # judge; ragway only needs each message to be an object with a role.
    model_config = ConfigDict(extra="allow", frozen=True)
    role: str


class StreamOptions(OpenAIRequest):
    include_usage: StrictBool | None = None


class ChatCompletionRequest(OpenAIRequest):
    model: str
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None


Prompt = str | list[str] | list[int] | list[list[int]]


class CompletionRequest(OpenAIRequest):
    model: str
    prompt: Prompt
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None


GenerationRequest = ChatCompletionRequest | CompletionRequest
