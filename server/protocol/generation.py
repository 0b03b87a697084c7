"""Chat and text completion requests."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, StrictBool

from server.protocol.common import OpenAIRequest, check_inputs, check_list
from server.settings import LimitsSettings


class ChatMessage(OpenAIRequest):
    # Roles and content shapes (strings, content-part arrays, tool calls) are the worker's to
    # judge; ragway only needs each message to be an object with a role.
    model_config = ConfigDict(extra="allow", frozen=True)
    role: str


class StreamOptions(OpenAIRequest):
    include_usage: StrictBool | None = None


class ChatCompletionRequest(OpenAIRequest):
    model: str
    messages: Annotated[list[ChatMessage], Field(min_length=1, fail_fast=True)]
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None

    @classmethod
    def check_sizes(cls, data: dict[str, Any], limits: LimitsSettings) -> None:
        check_list(data, "messages", limits.max_messages, "max_messages")


_TokenIds = Annotated[list[int], Field(fail_fast=True)]
Prompt = (
    str
    | Annotated[list[str], Field(fail_fast=True)]
    | _TokenIds
    | Annotated[list[_TokenIds], Field(fail_fast=True)]
)


class CompletionRequest(OpenAIRequest):
    model: str
    prompt: Prompt
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None

    @classmethod
    def check_sizes(cls, data: dict[str, Any], limits: LimitsSettings) -> None:
        check_inputs(data, "prompt", limits)


GenerationRequest = ChatCompletionRequest | CompletionRequest
