"""A fake chat worker with finite capacity, for the flow-control benchmark: a toy of vLLM's
continuous batching, so that a flood queues somewhere and the gateway's admission shows.

One engine loop decodes in steps. A step gives every running sequence one token and takes
`step_ms + per_seq_ms * running` (per-token time grows with the batch, as on a CPU). At most
`slots` sequences run at once (vLLM's `max_num_seqs`); the rest wait in the engine's queue,
first come first served, or by the body's `priority` field (lower first, then arrival) with
`--scheduling-policy priority`, as vLLM orders its waiting queue (no preemption here). A new
sequence's first token comes with the first step after it is admitted.

`/metrics` has vLLM's gauges as ragway scrapes them: `vllm:num_requests_running`,
`vllm:num_requests_waiting`, and `vllm:kv_cache_usage_perc` (a fraction: the running
sequences' prompt and generated tokens over `kv_tokens`). A client that disconnects leaves the
engine at the next step (vLLM aborts the request).

    python -m benchmarks.capacity_worker --port 8100 --slots 16 --step-ms 20 --per-seq-ms 1
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
from dataclasses import dataclass, field

import orjson
import uvicorn
from starlette.types import Receive, Scope, Send

from benchmarks.fake_worker import _header, _read_body, _respond

_SSE = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
_TOKEN = " hi"


@dataclass(frozen=True, slots=True)
class Capacity:
    slots: int = 16
    step_ms: float = 20.0
    per_seq_ms: float = 1.0
    kv_tokens: int = 32768
    max_tokens: int = 256  # an answer's length when the request sets no max_tokens
    priority: bool = False  # order the queue by the request's `priority` (vLLM's policy)
    model: str = "bench-chat"


@dataclass(eq=False, slots=True)
class _Seq:
    prompt: int
    remaining: int
    out: asyncio.Queue[int | None] = field(default_factory=asyncio.Queue)
    generated: int = 0
    cancelled: bool = False


class Engine:
    """The step loop and its queue; `submit` from request handlers, `run` as one task."""

    def __init__(self, capacity: Capacity):
        self.capacity = capacity
        self.running: list[_Seq] = []
        self.waiting: list[tuple[int, int, _Seq]] = []  # heap of (priority, arrival, seq)
        self.completed = 0
        self._arrivals = itertools.count()
        self._wake = asyncio.Event()

    def submit(self, seq: _Seq, priority: int) -> None:
        rank = priority if self.capacity.priority else 0
        heapq.heappush(self.waiting, (rank, next(self._arrivals), seq))
        self._wake.set()

    def queued(self) -> int:
        return sum(not entry[2].cancelled for entry in self.waiting)

    def kv_usage(self) -> float:
        held = sum(s.prompt + s.generated for s in self.running)
        return min(1.0, held / self.capacity.kv_tokens)

    def _admit(self) -> None:
        while self.waiting and len(self.running) < self.capacity.slots:
            seq = heapq.heappop(self.waiting)[2]
            if not seq.cancelled:
                self.running.append(seq)

    def _step(self) -> None:
        still: list[_Seq] = []
        for seq in self.running:
            if seq.cancelled:
                continue
            seq.generated += 1
            seq.remaining -= 1
            seq.out.put_nowait(seq.generated)
            if seq.remaining > 0:
                still.append(seq)
            else:
                seq.out.put_nowait(None)
                self.completed += 1
        self.running = still

    async def run(self) -> None:
        cap = self.capacity
        while True:
            self._admit()
            if not self.running:
                self._wake.clear()
                await self._wake.wait()
                continue
            await asyncio.sleep((cap.step_ms + cap.per_seq_ms * len(self.running)) / 1000)
            self._step()


def _event(head: bytes, choice: bytes) -> bytes:
    return b"data: " + head + b'"choices":[' + choice + b"]}\n\n"


class CapacityWorker:
    """The ASGI app: /health, /v1/models, /metrics, /v1/chat/completions (stream or not)."""

    def __init__(self, capacity: Capacity):
        self.capacity = capacity
        self.engine = Engine(capacity)
        self._task: asyncio.Task[None] | None = None
        self._ids = itertools.count()
        card = {"id": capacity.model, "object": "model", "owned_by": "fake", "max_model_len": 8192}
        self._models = orjson.dumps({"object": "list", "data": [card]})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if self._task is None:  # lifespan is off: the loop starts with the first request
            self._task = asyncio.create_task(self.engine.run())
        path = scope["path"]
        if path == "/v1/chat/completions":
            await self._chat(scope, receive, send)
        elif path == "/health":
            await _respond(send, 200, b"")
        elif path == "/v1/models":
            await _respond(send, 200, self._models)
        elif path == "/metrics":
            await _respond(send, 200, self.metrics(), b"text/plain; version=0.0.4")
        else:
            await _respond(send, 404, b'{"error":{"message":"not found","type":"NotFound"}}')

    def metrics(self) -> bytes:
        labels = f'{{model_name="{self.capacity.model}"}}'
        engine = self.engine
        return (
            f"vllm:num_requests_running{labels} {len(engine.running)}\n"
            f"vllm:num_requests_waiting{labels} {engine.queued()}\n"
            f"vllm:kv_cache_usage_perc{labels} {engine.kv_usage():.4f}\n"
            f"vllm:request_success_total{labels} {engine.completed}\n"
        ).encode()

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = await _read_body(receive)
        try:
            request = orjson.loads(raw)
            limit = int(request.get("max_tokens") or self.capacity.max_tokens)
            priority = int(request.get("priority") or 0)
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            await _respond(send, 400, b'{"error":{"message":"bad request","type":"BadRequest"}}')
            return
        seq = _Seq(prompt=len(raw) // 4, remaining=max(1, limit))
        watcher = asyncio.create_task(_watch_disconnect(receive, seq))
        self.engine.submit(seq, priority)
        rid = _header(scope, b"x-request-id") or f"{next(self._ids):x}"
        head = b'{"id":"chatcmpl-%s","object":"chat.completion.chunk","model":%s,' % (
            rid.encode(),
            orjson.dumps(request.get("model", self.capacity.model)),
        )
        try:
            if request.get("stream"):
                await self._stream(send, seq, head)
            else:
                await self._whole(send, seq, head.replace(b".chunk", b""))
        finally:
            seq.cancelled = True  # a no-op when it ended; leaves the engine when it did not
            watcher.cancel()

    async def _stream(self, send: Send, seq: _Seq, head: bytes) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _SSE})
        token = orjson.dumps({"index": 0, "delta": {"content": _TOKEN}, "finish_reason": None})
        first = True
        while await seq.out.get() is not None:
            if first:
                role = {"index": 0, "delta": {"role": "assistant", "content": ""}}
                await _more(send, _event(head, orjson.dumps(role)))
                first = False
            await _more(send, _event(head, token))
        if seq.cancelled:
            return
        last = {"index": 0, "delta": {"content": ""}, "finish_reason": "length"}
        usage = b'"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}' % (
            seq.prompt, seq.generated, seq.prompt + seq.generated)  # fmt: skip
        await _more(send, _event(head, orjson.dumps(last)))
        await _more(send, b"data: " + head + b'"choices":[],' + usage + b"}\n\n")
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    async def _whole(self, send: Send, seq: _Seq, head: bytes) -> None:
        while await seq.out.get() is not None:
            pass
        message = {"role": "assistant", "content": _TOKEN * seq.generated}
        choice = {"index": 0, "message": message, "finish_reason": "length"}
        usage = {"prompt_tokens": seq.prompt, "completion_tokens": seq.generated,
                 "total_tokens": seq.prompt + seq.generated}  # fmt: skip
        body = head + b'"choices":' + orjson.dumps([choice]) + b',"usage":'
        await _respond(send, 200, body + orjson.dumps(usage) + b"}")


async def _more(send: Send, body: bytes) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": True})


async def _watch_disconnect(receive: Receive, seq: _Seq) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    seq.cancelled = True
    seq.out.put_nowait(None)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = Capacity()
    p = argparse.ArgumentParser(prog="python -m benchmarks.capacity_worker", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8100)
    p.add_argument("--model", default=d.model)
    p.add_argument("--slots", type=int, default=d.slots, help="sequences decoded at once")
    p.add_argument("--step-ms", type=float, default=d.step_ms, help="a step with one sequence")
    p.add_argument("--per-seq-ms", type=float, default=d.per_seq_ms, help="added per sequence")
    p.add_argument("--kv-tokens", type=int, default=d.kv_tokens, help="KV cache, in tokens")
    p.add_argument("--max-tokens", type=int, default=d.max_tokens, help="default answer length")
    p.add_argument("--scheduling-policy", choices=["fcfs", "priority"], default="fcfs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    capacity = Capacity(a.slots, a.step_ms, a.per_seq_ms, a.kv_tokens, a.max_tokens,
                        a.scheduling_policy == "priority", a.model)  # fmt: skip
    uvicorn.run(CapacityWorker(capacity), host=a.host, port=a.port, loop="uvloop",
                http="httptools", lifespan="off", access_log=False, log_level="warning",
                backlog=4096)  # fmt: skip


if __name__ == "__main__":
    main()
