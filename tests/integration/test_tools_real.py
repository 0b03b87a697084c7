"""Tool calling and structured output on the real stack: LangChain and the OpenAI SDK against
`ragway up` (SmolLM2-135M on vLLM CPU, hermes parser, ragway's tool template).

These test the protocol, not the model's judgement: `tool_choice="required"`, a named function
and `response_format` are enforced by vLLM's guided decoding, so they must hold whatever the
135M model would have chosen; under "auto" whether it calls a tool is the model's call, so
only the shape of the answer is asserted there.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import ModelRequest, wrap_model_call
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.integration.conftest import RunningStack

pytestmark = pytest.mark.stack

# Short answers keep CPU generation fast; constrained JSON for these schemas fits well inside.
# Greedy decoding throughout: sampled, the 135M model can ramble inside a JSON string until
# the token limit (an unparsable answer the protocol cannot prevent).
MAX_TOKENS = 64


class Weather(BaseModel):
    """The weather in a city."""

    city: str
    celsius: int


class Person(BaseModel):
    name: str
    age: int


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"It is sunny and 21 degrees in {city}."


def chat(stack: RunningStack, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model="gpt-4o-mini",
        base_url=stack.base_url,
        api_key="x",
        max_tokens=MAX_TOKENS,
        temperature=0,
        max_retries=0,
        **kwargs,
    )


def test_bind_tools_required_returns_a_parsed_tool_call(stack: RunningStack) -> None:
    llm = chat(stack).bind_tools([get_weather], tool_choice="required")
    reply = llm.invoke("What is the weather in Paris?")
    assert isinstance(reply, AIMessage)
    assert len(reply.tool_calls) >= 1
    call = reply.tool_calls[0]
    assert call["name"] == "get_weather"
    assert isinstance(call["args"]["city"], str)
    assert call["id"]
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["input_tokens"] > 0


def test_streamed_tool_call_arrives_as_deltas_langchain_assembles(stack: RunningStack) -> None:
    llm = chat(stack, stream_usage=True).bind_tools([get_weather], tool_choice="get_weather")
    stream = llm.stream("What is the weather in Oslo?")
    chunks = [c for c in stream if isinstance(c, AIMessageChunk)]
    deltas = [c for c in chunks if c.tool_call_chunks]
    assert len(deltas) > 1  # the call came in pieces, not as one message
    whole = chunks[0]
    for piece in chunks[1:]:
        whole += piece
    assert [c["name"] for c in whole.tool_calls] == ["get_weather"]
    assert isinstance(whole.tool_calls[0]["args"]["city"], str)
    # Usage still reaches a client that asks for it.
    assert whole.usage_metadata is not None
    assert whole.usage_metadata["output_tokens"] > 0


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
def test_with_structured_output_returns_an_instance(stack: RunningStack, method: str) -> None:
    llm = chat(stack).with_structured_output(Weather, method=method)  # type: ignore[arg-type]
    result = llm.invoke("Paris is sunny at 21 degrees. Report the weather.")
    assert isinstance(result, Weather)
    assert isinstance(result.celsius, int)


def test_agent_runs_a_tool_then_answers(stack: RunningStack) -> None:
    """LangChain's agent (a LangGraph loop): the model must call the tool on the first step
    (tool_choice "required"); once the tool's result is in, it gets "none", so the loop ends
    with a plain answer. The recursion limit bounds the loop should anything go wrong."""
    calls: list[str] = []

    @tool
    def lookup_weather(city: str) -> str:
        """Current weather in a city."""
        calls.append(city)
        return f"It is sunny and 21 degrees in {city}."

    @wrap_model_call
    def force_then_finish(request: ModelRequest, handler: Any) -> Any:
        after_tool = isinstance(request.messages[-1], ToolMessage)
        return handler(request.override(tool_choice="none" if after_tool else "required"))

    agent = create_agent(chat(stack), tools=[lookup_weather], middleware=[force_then_finish])
    result = agent.invoke(
        {"messages": [HumanMessage("What is the weather in Paris?")]}, {"recursion_limit": 6}
    )
    messages: list[BaseMessage] = result["messages"]
    assert len(calls) == 1
    assert any(isinstance(m, ToolMessage) and "sunny" in str(m.content) for m in messages)
    final = messages[-1]
    assert isinstance(final, AIMessage)
    assert not final.tool_calls
    assert isinstance(final.content, str)
    assert final.content.strip()


def test_openai_sdk_parse_returns_the_pydantic_model(stack: RunningStack) -> None:
    client = openai.OpenAI(base_url=stack.base_url, api_key="x", max_retries=0)
    completion = client.chat.completions.parse(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Ada Lovelace was 36. Extract the person."}],
        response_format=Person,
        max_tokens=MAX_TOKENS,
        temperature=0,
    )
    person = completion.choices[0].message.parsed
    assert isinstance(person, Person)
    assert person.name


def test_sdk_named_function_and_auto(stack: RunningStack) -> None:
    client = openai.OpenAI(base_url=stack.base_url, api_key="x", max_retries=0)
    tools: list[Any] = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather in a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    ask: list[Any] = [{"role": "user", "content": "What is the weather in Rome?"}]
    named = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=ask,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=MAX_TOKENS,
        temperature=0,
    )
    (call,) = named.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert isinstance(json.loads(call.function.arguments)["city"], str)  # type: ignore[union-attr]
    # "auto": a well-formed answer either way; whether the 135M model calls is its own choice.
    auto = client.chat.completions.create(
        model="gpt-4o-mini", messages=ask, tools=tools, max_tokens=MAX_TOKENS, temperature=0
    )
    message = auto.choices[0].message
    assert message.content or message.tool_calls
    for made in message.tool_calls or []:
        assert made.function.name == "get_weather"  # type: ignore[union-attr]


def test_models_retrieve_alias_and_unknown(stack: RunningStack) -> None:
    client = openai.OpenAI(base_url=stack.base_url, api_key="x", max_retries=0)
    alias = client.models.retrieve("gpt-4o-mini")
    assert alias.id == "gpt-4o-mini"
    assert alias.object == "model"
    listed = {m.id: m for m in client.models.list()}
    assert alias == listed["gpt-4o-mini"]
    served = client.models.retrieve("smollm2-135m-instruct")
    assert served.owned_by == listed["smollm2-135m-instruct"].owned_by
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-5-nonexistent")
    assert caught.value.code == "model_not_found"


def completion_tokens(stack: RunningStack) -> float:
    text = httpx.get(stack.base_url.removesuffix("/v1") + "/metrics", timeout=30).text
    return sum(
        float(entry.rsplit(" ", 1)[1])
        for entry in text.splitlines()
        if entry.startswith("ragway_completion_tokens_total") and 'model="gpt-4o-mini"' in entry
    )


def test_tool_calls_are_counted_in_metrics(stack: RunningStack) -> None:
    before = completion_tokens(stack)
    llm = chat(stack).bind_tools([get_weather], tool_choice="required")
    streamed = [c for c in llm.stream("Weather in Lima?") if isinstance(c, AIMessageChunk)]
    assert any(c.tool_call_chunks for c in streamed)
    reply = llm.invoke("Weather in Quito?")
    assert isinstance(reply, AIMessage)
    assert reply.usage_metadata is not None
    grew = completion_tokens(stack) - before
    # Both requests' tokens, from the worker's usage: the stream's too.
    assert grew > reply.usage_metadata["output_tokens"]
