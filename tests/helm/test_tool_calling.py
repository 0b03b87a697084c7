"""Tool calling in the chart: each example for the seeds' model families starts vLLM with the
parser that reads that family's tool calls, and none where vLLM has no parser (ChatGLM3)."""

from __future__ import annotations

import pytest

from tests.helm.chart import containers, render, render_set


def vllm_args(value_set: str) -> list[list[str]]:
    deployments = render_set(value_set).of_kind("Deployment")
    vllm = [
        d for d in deployments if d["metadata"]["labels"]["app.kubernetes.io/component"] == "vllm"
    ]
    return [c["args"] for d in vllm for c in containers(d)]


def parsers(args: list[str]) -> list[str]:
    return [a.split("=", 1)[1] for a in args if a.startswith("--tool-call-parser=")]


@pytest.mark.parametrize(
    ("value_set", "parser"),
    [
        ("example-llama-bge", "llama3_json"),
        ("example-qwen-bge", "hermes"),
        ("example-glm45-bge", "glm45"),
    ],
)
def test_examples_set_their_familys_parser(value_set: str, parser: str) -> None:
    (args,) = vllm_args(value_set)
    assert parsers(args) == [parser]
    assert "--enable-auto-tool-choice" in args


@pytest.mark.parametrize("value_set", ["defaults", "example-chatglm3-bge"])
def test_no_parser_no_tool_calling(value_set: str) -> None:
    for args in vllm_args(value_set):
        assert "--enable-auto-tool-choice" not in args
        assert not parsers(args)
        assert not any(a.startswith("--chat-template") for a in args)


def test_chat_template_per_worker_over_defaults() -> None:
    template = "{% for m in messages %}{{ m.content }}{% endfor %}"
    rendered = render(
        {
            "vllm": {
                "defaults": {"toolCallParser": "hermes"},
                "workers": [
                    {"name": "a", "model": "org/a", "chatTemplate": template},
                    {"name": "b", "model": "org/b", "toolCallParser": ""},
                ],
            }
        }
    )
    by_name = {
        d["metadata"]["name"]: next(containers(d))["args"]
        for d in rendered.of_kind("Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "vllm"
    }
    a, b = (by_name[n] for n in sorted(by_name))
    assert parsers(a) == ["hermes"]
    assert f"--chat-template={template}" in a
    assert not parsers(b)
    assert "--enable-auto-tool-choice" not in b
