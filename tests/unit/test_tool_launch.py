"""`ragway up`'s tool-calling flags, the vLLM arguments they become, and the shipped SmolLM2
template rendering tool definitions, calls and results (in a Jinja sandbox set up as
transformers sets it up for `apply_chat_template`, which is what vLLM calls)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ragway import cli, launch
from ragway.stack import StackError
from server.settings import FlowSettings

MODEL = Path("/models/x")


def up_args(*flags: str) -> argparse.Namespace:
    return cli._parser().parse_args(["up", *flags])


def test_default_stack_enables_hermes_with_the_shipped_template() -> None:
    tools = cli.tool_calling(up_args())
    assert tools == launch.ToolCalling("hermes", launch.smollm2_tool_template())
    argv = launch.vllm_argv(MODEL, "m", "127.0.0.1", 8001, 2048, tools=tools)
    tail = argv[argv.index("--enable-auto-tool-choice") :]
    assert tail == [
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        "hermes",
        "--tool-strict-level",
        "parameter",
        "--chat-template",
        str(launch.smollm2_tool_template()),
    ]
    config = argv[argv.index("--structured-outputs-config") + 1]
    assert json.loads(config) == {"backend": "xgrammar", "disable_any_whitespace": True}


def test_own_model_keeps_its_template_and_takes_a_parser(tmp_path: Path) -> None:
    flags = ("--model", str(tmp_path), "--tool-call-parser", "llama3_json")
    tools = cli.tool_calling(up_args(*flags, "--tool-strict-level", "auto"))
    assert tools == launch.ToolCalling("llama3_json", None, "auto")
    argv = launch.vllm_argv(MODEL, "m", "127.0.0.1", 8001, 2048, tools=tools)
    assert "--chat-template" not in argv
    assert argv[argv.index("--tool-call-parser") + 1] == "llama3_json"


def test_chat_template_override_and_missing_file(tmp_path: Path) -> None:
    template = tmp_path / "t.jinja"
    template.write_text("{{ messages }}")
    tools = cli.tool_calling(up_args("--chat-template", str(template)))
    assert tools is not None
    assert tools.chat_template == template
    with pytest.raises(StackError, match="no such file"):
        cli.tool_calling(up_args("--chat-template", str(tmp_path / "missing.jinja")))


def test_no_tools_starts_vllm_without_tool_calling() -> None:
    assert cli.tool_calling(up_args("--no-tools")) is None
    argv = launch.vllm_argv(MODEL, "m", "127.0.0.1", 8001, 2048, tools=None)
    assert "--enable-auto-tool-choice" not in argv
    assert "--chat-template" not in argv


def render(messages: list[dict[str, object]], tools: list[dict[str, object]] | None) -> str:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda value, indent=None: json.dumps(
        value, ensure_ascii=False, indent=indent
    )
    template = env.from_string(launch.smollm2_tool_template().read_text())
    return template.render(messages=messages, tools=tools, add_generation_prompt=True)


WEATHER: dict[str, object] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_template_without_tools_matches_smollm2s_own() -> None:
    rendered = render([{"role": "user", "content": "Say hi"}], None)
    assert rendered == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_template_renders_tools_calls_and_results() -> None:
    messages: list[dict[str, object]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 °C"},
        {"role": "system", "content": "Context: passages"},  # RAG adds a later system turn
    ]
    rendered = render(messages, [WEATHER])
    system = rendered[: rendered.index("<|im_end|>")]
    assert system.startswith("<|im_start|>system\nBe brief.")
    assert '<tools>\n{"type": "function", "function": {"name": "get_weather"' in system
    assert "</tools>" in system
    assert (
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": '
        '{"city": "Paris"}}\n</tool_call><|im_end|>\n'
    ) in rendered
    assert "<|im_start|>tool\n<tool_response>\nsunny, 21 °C\n</tool_response><|im_end|>" in rendered
    assert "<|im_start|>system\nContext: passages<|im_end|>" in rendered
    assert rendered.endswith("<|im_start|>assistant\n")


def test_template_takes_string_arguments_and_content_parts() -> None:
    messages: list[dict[str, object]] = [
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}],
        },
    ]
    rendered = render(messages, [WEATHER])
    assert "<|im_start|>user\nWeather?<|im_end|>" in rendered
    assert (
        '<|im_start|>assistant\nChecking.\n<tool_call>\n{"name": "get_weather", "arguments": '
        '{"city": "Oslo"}}\n</tool_call><|im_end|>'
    ) in rendered


def test_vllm_runs_priority_scheduling_for_flow_control() -> None:
    argv = launch.vllm_argv(MODEL, "m", "127.0.0.1", 8001, 2048)
    assert argv[argv.index("--scheduling-policy") + 1] == "priority"


def test_vllm_decodes_as_many_sequences_as_flow_control_admits() -> None:
    argv = launch.vllm_argv(MODEL, "m", "127.0.0.1", 8001, 2048)
    seqs = int(argv[argv.index("--max-num-seqs") + 1])
    assert seqs == launch.MAX_NUM_SEQS == FlowSettings().max_in_flight
