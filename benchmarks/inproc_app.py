"""One try of `python -m benchmarks inproc`: the gateway's app called in this process, without a
server, against a worker over loopback; prints the CPU this process spent per request.

Run as a script (`python benchmarks/inproc_app.py SPEC`), with the tree under test first on
PYTHONPATH, so that it imports that tree's `server` and nothing else of this checkout: a
before/after run compares two trees with the same script. SPEC is JSON: `worker` (base URL),
`model`, `requests`, `concurrency`, `warmup`, and optionally `keys_file` and `key` (auth on)
and `settings` (more gateway settings, e.g. `{"flow": {"enabled": false}}`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import MutableMapping
from typing import Any

BODY = b'{"model": "%s", "messages": [{"role": "user", "content": "Say hello in one short sentence please."}], "max_tokens": 64}'  # noqa: E501


async def run(spec: dict[str, Any]) -> dict[str, float]:
    from asgi_lifespan import LifespanManager
    from prometheus_client import CollectorRegistry

    from server.app import create_app
    from server.settings import RagwaySettings

    body = BODY % spec["model"].encode()
    headers = [
        (b"host", b"ragway"),
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
    ]
    config: dict[str, Any] = {
        "workers": [{"url": spec["worker"], "kind": "chat", "name": "worker"}],
        "log_level": "warning",
        **spec.get("settings", {}),
    }
    if spec.get("keys_file"):
        config["auth"] = {"keys_file": spec["keys_file"]}
        headers.append((b"authorization", b"Bearer " + spec["key"].encode()))
    app = create_app(RagwaySettings.model_validate(config), registry=CollectorRegistry())
    async with LifespanManager(app) as manager:
        asgi = manager.app  # sets each scope's "state" to the lifespan's, as a server does

        async def call(path: str, method: str, head: list[tuple[bytes, bytes]], data: bytes) -> int:
            scope = {
                "type": "http", "method": method, "path": path, "raw_path": path.encode(),
                "headers": head, "query_string": b"", "root_path": "", "scheme": "http",
                "http_version": "1.1", "server": ("ragway", 80), "client": ("client", 1),
                "asgi": {"version": "3.0"}, "extensions": {"ragway.on_disconnect": []},
            }  # fmt: skip
            sent: list[MutableMapping[str, Any]] = []
            unread = [True]

            async def receive() -> dict[str, Any]:
                if unread[0]:
                    unread[0] = False
                    return {"type": "http.request", "body": data, "more_body": False}
                # As a server does: the next message is the disconnect, which never comes
                # (a task watching for it is cancelled when the request ends).
                await asyncio.Event().wait()
                return {"type": "http.disconnect"}

            async def send(message: MutableMapping[str, Any]) -> None:
                sent.append(message)

            await asgi(scope, receive, send)
            return int(sent[0]["status"])

        deadline = time.monotonic() + 60
        while await call("/readyz", "GET", [], b"") != 200:
            if time.monotonic() > deadline:
                raise SystemExit("the gateway never became ready")
            await asyncio.sleep(0.05)

        async def caller(count: int) -> None:
            for _ in range(count):
                status = await call("/v1/chat/completions", "POST", headers, body)
                if status != 200:
                    raise SystemExit(f"a chat answered {status}")

        concurrency = spec["concurrency"]
        per_caller = max(1, spec["requests"] // concurrency)
        await asyncio.gather(
            *(caller(spec["warmup"] // concurrency + 1) for _ in range(concurrency))
        )
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(caller(per_caller) for _ in range(concurrency)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = per_caller * concurrency
    return {"requests": done, "cpu_us": cpu / done * 1e6, "wall_us": wall / done * 1e6}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.loads(sys.argv[1])))))
