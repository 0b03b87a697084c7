"""The `ragway` command: bring up the local stack, or run one of its parts."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from ragway import kb_cli, keys_cli, launch
from ragway.stack import Stack, StackError, check_port_free
from ragway.weights import (
    WeightsError,
    chat_model_dir,
    check_model_dir,
    embedding_model_dir,
    is_prepared,
    prepare_chat_model,
)

CHAT_MODEL = "smollm2-135m-instruct"
EMBEDDING_MODEL = "all-minilm-l6-v2"
# Names that tools hard-code, so they work against the local stack unchanged.
CHAT_ALIASES = ("gpt-4o-mini", "gpt-3.5-turbo")
EMBEDDING_ALIASES = ("text-embedding-3-small", "text-embedding-ada-002")


def default_data_dir() -> Path:
    env = os.environ.get("RAGWAY_DATA_DIR")
    return Path(env) if env else Path.home() / ".cache" / "ragway"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ragway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="prepare the models and run the whole local stack")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000, help="gateway port (default 8000)")
    up.add_argument("--chat-port", type=int, default=8001, help="first vLLM worker's port")
    up.add_argument("--chat-workers", type=int, default=1, help="vLLM workers (default 1)")
    up.add_argument("--embedding-port", type=int, default=8002, help="embedding worker port")
    up.add_argument("--model", type=Path, help="chat model directory (default: SmolLM2-135M)")
    up.add_argument("--served-model-name", default=CHAT_MODEL)
    up.add_argument("--embedding-model", type=Path, help="sentence-transformers directory")
    up.add_argument("--data-dir", type=Path, default=default_data_dir(), help="model cache")
    up.add_argument("--run-dir", type=Path, help="logs and config (default: DATA_DIR/run)")
    up.add_argument("--kv-cache-gib", type=float, default=2.0)
    up.add_argument("--max-model-len", type=int, default=2048)
    up.add_argument(
        "--compile",
        action="store_true",
        help="let vLLM compile the model: ~10-15%% faster, but every start takes minutes longer",
    )
    up.add_argument("--ready-timeout", type=float, default=900.0)
    _tool_arguments(up)
    up.add_argument(
        "--auth",
        action="store_true",
        help="require API keys: adds a fresh admin key to the key file and prints it",
    )
    up.add_argument(
        "--keys-file", type=Path, help="key file for --auth (default RUN_DIR/keys.yaml)"
    )

    prep = sub.add_parser("prepare", help="dequantise the default chat model; print its path")
    prep.add_argument("--data-dir", type=Path, default=default_data_dir())

    sub.add_parser("gateway", help="run the gateway alone (settings from RAGWAY_* / YAML)")
    emb = sub.add_parser("embedding-worker", help="run the embedding worker alone")
    emb.add_argument("args", nargs=argparse.REMAINDER)
    kb_cli.register(sub)
    keys_cli.register(sub, default_data_dir())
    return parser


def _tool_arguments(up: argparse.ArgumentParser) -> None:
    tools = up.add_argument_group("tool calling (vLLM's automatic tool choice)")
    tools.add_argument(
        "--tool-call-parser",
        default="hermes",
        help="vLLM's parser for the model's tool calls: hermes (default; SmolLM2 with ragway's "
        "template, Qwen2.5, Hermes), llama3_json (Llama 3.x), glm45/glm47 (GLM-4.5 and later)",
    )
    tools.add_argument(
        "--chat-template",
        type=Path,
        help="Jinja chat template for vLLM (default: ragway's tool-calling template for the "
        "default SmolLM2, the model's own for --model)",
    )
    tools.add_argument(
        "--tool-strict-level",
        choices=("auto", "function", "parameter"),
        default="parameter",
        help="how strictly guided decoding holds tool calls to the tools' schemas (default "
        "parameter: arguments must match, as if every tool were strict)",
    )
    tools.add_argument("--no-tools", action="store_true", help="start vLLM without tool calling")


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        if args.command == "up":
            up(args)
        elif args.command == "prepare":
            print(prepare_chat_model(args.data_dir))
        elif args.command == "gateway":
            from server.__main__ import main as gateway_main

            gateway_main()
        elif args.command == "embedding-worker":
            from workers.embedding.__main__ import main as embedding_main

            embedding_main(args.args)
        elif args.command in kb_cli.COMMANDS:
            sys.exit(kb_cli.run(args))
        elif args.command in keys_cli.COMMANDS:
            sys.exit(keys_cli.run(args))
    except (StackError, WeightsError, kb_cli.CliError, keys_cli.KeysError) as exc:
        sys.exit(f"ragway: {exc}")


def _gateway_settings(args: argparse.Namespace) -> dict[str, object]:
    host = args.host
    chat = [
        {"name": f"vllm-{i}", "url": f"http://{host}:{port}", "kind": "chat"}
        for i, port in enumerate(chat_ports(args))
    ]
    return {
        "host": host,
        "port": args.port,
        "workers": [
            *chat,
            {
                "name": "embedding-0",
                "url": f"http://{host}:{args.embedding_port}",
                "kind": "embedding",
            },
        ],
        "aliases": {
            **dict.fromkeys(CHAT_ALIASES, args.served_model_name),
            **dict.fromkeys(EMBEDDING_ALIASES, EMBEDDING_MODEL),
        },
        "health": {"interval": 2.0, "timeout": 2.0},
        # Ctrl-C: streams get this long to finish (well within Stack.stop's 20 s per process).
        "shutdown": {"grace": 10.0},
        # Knowledge bases: embedded Chroma under the data directory.
        "rag": {"data_dir": str(args.data_dir), "default_embedding_model": EMBEDDING_MODEL},
    }


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def chat_ports(args: argparse.Namespace) -> list[int]:
    """The vLLM workers' ports: consecutive from --chat-port, skipping the other two."""
    taken = {args.port, args.embedding_port}
    ports: list[int] = []
    candidate = args.chat_port
    while len(ports) < args.chat_workers:
        if candidate not in taken:
            ports.append(candidate)
        candidate += 1
    return ports


def _model_dirs(args: argparse.Namespace, stack: Stack) -> tuple[Path, Path]:
    embedding_dir = check_model_dir(args.embedding_model or embedding_model_dir())
    if args.model is not None:
        return check_model_dir(args.model), embedding_dir
    first = not is_prepared(chat_model_dir(args.data_dir))
    stack.say("preparing SmolLM2-135M-Instruct" + (" (first run: ~1 min)" if first else ""))
    return prepare_chat_model(args.data_dir), embedding_dir


def tool_calling(args: argparse.Namespace) -> launch.ToolCalling | None:
    """How the vLLM workers parse and render tool calls, from `ragway up`'s flags."""
    if args.no_tools:
        return None
    template = args.chat_template
    if template is None and args.model is None:
        template = launch.smollm2_tool_template()
    if template is not None and not template.is_file():
        raise StackError(f"--chat-template {template}: no such file")
    return launch.ToolCalling(args.tool_call_parser, template, args.tool_strict_level)


def _specs(
    args: argparse.Namespace, chat_dir: Path, embedding_dir: Path, config: Path
) -> list[launch.ProcessSpec]:
    cores = os.cpu_count() or 1
    tools = tool_calling(args)
    specs = [
        launch.vllm_spec(
            chat_dir,
            args.served_model_name,
            host=args.host,
            port=port,
            kv_cache_gib=args.kv_cache_gib,
            max_model_len=args.max_model_len,
            # One worker binds itself; several must not all pin to the same core.
            cpu_bind=str(i % cores) if args.chat_workers > 1 else None,
            compile_model=args.compile,
            tools=tools,
        )
        for i, port in enumerate(chat_ports(args))
    ]
    specs.append(launch.embedding_spec(embedding_dir, EMBEDDING_MODEL, host=args.host,
                                       port=args.embedding_port,
                                       cache_dir=args.data_dir / "onnx"))  # fmt: skip
    specs.append(launch.gateway_spec(config, host=args.host, port=args.port))
    return specs


def up(args: argparse.Namespace) -> None:
    if args.chat_workers < 1:
        raise StackError("--chat-workers must be at least 1")
    run_dir = args.run_dir or args.data_dir / "run"
    stack = Stack(run_dir / "logs", sys.stdout)
    check_port_free(args.host, args.port, "gateway")
    check_port_free(args.host, args.embedding_port, "embedding worker")
    for port in chat_ports(args):
        check_port_free(args.host, port, "vLLM worker")
    chat_dir, embedding_dir = _model_dirs(args, stack)
    settings = _gateway_settings(args)
    api_key = None
    if args.auth:
        keys_file = args.keys_file or run_dir / "keys.yaml"
        api_key = keys_cli.fresh_local_key(keys_file)
        settings["auth"] = {"keys_file": str(keys_file)}
    config = launch.write_gateway_config(run_dir / "gateway.yaml", settings)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    started = time.monotonic()
    try:
        for spec in _specs(args, chat_dir, embedding_dir, config):
            stack.start(spec)
        stack.wait_ready(args.ready_timeout)
        _print_ready(args, time.monotonic() - started, api_key)
        stack.watch()
    except KeyboardInterrupt:
        stack.say("stopping")
    finally:
        stack.stop()
        stack.say("stopped")


def example_commands(base_url: str, model: str, api_key: str | None = None) -> tuple[str, str]:
    """A curl command and an OpenAI SDK one-liner against the running stack."""
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 32}
    )
    bearer = f" -H 'Authorization: Bearer {api_key}'" if api_key else ""
    curl = (
        f"curl -s {base_url}/chat/completions{bearer} -H 'Content-Type: application/json' "
        f"-d '{body}'"
    )
    sdk = (
        "python -c 'from openai import OpenAI; "
        f'c = OpenAI(base_url="{base_url}", api_key="{api_key or "x"}"); '
        f'r = c.chat.completions.create(model="{CHAT_ALIASES[0]}", max_tokens=32, '
        'messages=[{"role": "user", "content": "Say hello"}]); '
        "print(r.choices[0].message.content)'"
    )
    return curl, sdk


def _auth_line(args: argparse.Namespace, api_key: str | None) -> str:
    if api_key is None:
        return (
            f"  auth:     OFF: anyone who can reach {args.host}:{args.port} can use every model "
            "and read, change or delete every knowledge base (ragway up --auth turns keys on)"
        )
    keys_file = args.keys_file or (args.run_dir or args.data_dir / "run") / "keys.yaml"
    return (
        f"  auth:     on; admin key `ragway-up` (shown once): {api_key}\n"
        f"            key file: {keys_file} (ragway keys create|list|revoke --file ...)"
    )


def _print_ready(args: argparse.Namespace, took: float, api_key: str | None = None) -> None:
    base_url = f"http://{args.host}:{args.port}/v1"
    curl, sdk = example_commands(base_url, args.served_model_name, api_key)
    print(
        f"""
ragway is up in {took:.0f} s
  base_url: {base_url}
  models:   {args.served_model_name} (aliases: {", ".join(CHAT_ALIASES)})
            {EMBEDDING_MODEL} (aliases: {", ".join(EMBEDDING_ALIASES)})
{_auth_line(args, api_key)}

Try it:
  {curl}

  {sdk}

Press Ctrl-C to stop.""",
        flush=True,
    )
