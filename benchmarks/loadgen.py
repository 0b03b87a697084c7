"""The load generator: one aiohttp client, two load shapes, one record per request.

- Closed loop: `concurrency` callers, each sending its next request when the last one ends.
- Open loop: arrivals at a Poisson rate λ, whatever the server's speed (bounded in flight).

Each request yields a `Record` in vLLM's benchmark terms, timed with `perf_counter`: time to
the first token (the first SSE event that carries text; the whole answer when not streaming),
the gaps between text events (inter-token latencies), end-to-end latency, completion tokens
(from `usage` when the server sends it, else the text events counted), SSE events, and error.
Both loops are bounded in time and in count.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

Sink = Callable[["Record"], None]
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Call:
    """One request: a path under the base URL, a JSON body, and whether it streams."""

    path: str
    body: bytes
    stream: bool
    headers: tuple[tuple[str, str], ...] = ()


Workload = Callable[[int], Call]


@dataclass(slots=True)
class Record:
    start: float  # seconds since the phase began
    e2e: float = math.nan
    ttft: float = math.nan
    itl: list[float] = field(default_factory=list)
    tokens: int = 0
    chunks: int = 0
    status: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def new_session(
    connections: int, headers: dict[str, str] | None = None, read_timeout: float = 60.0
) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=0, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=read_timeout)
    # Ask for plain bodies: a gateway that compresses (LiteLLM's proxy gzips JSON over 500 bytes
    # when asked) would otherwise be measured compressing, not relaying.
    plain = {"accept-encoding": "identity", **(headers or {})}
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=plain, auto_decompress=False
    )


def _text_of(event: dict[str, Any]) -> str:
    choices = event.get("choices") or ()
    if not choices:
        return ""
    first = choices[0]
    delta = first.get("delta")
    text = delta.get("content") if isinstance(delta, dict) else first.get("text")
    return text if isinstance(text, str) else ""


async def _read_stream(response: aiohttp.ClientResponse, record: Record, began: float) -> None:
    last = math.nan
    done = False
    async for line in response.content:
        if not line.startswith(b"data: "):
            continue
        now = time.perf_counter()
        payload = line[6:].strip()
        if payload == b"[DONE]":
            done = True
            continue
        record.chunks += 1
        event = orjson.loads(payload)
        if "error" in event:
            record.error = f"in-band error: {str(event['error'])[:200]}"
        usage = event.get("usage")
        if usage:
            record.tokens = int(usage.get("completion_tokens", record.tokens))
        if _text_of(event):
            if math.isnan(last):
                record.ttft = now - began
            else:
                record.itl.append(now - last)
            last = now
            if not usage:
                record.tokens += 1
    if not done and record.error is None:
        record.error = "stream ended without [DONE]"


async def _read_whole(response: aiohttp.ClientResponse, record: Record, began: float) -> None:
    body = await response.read()
    record.ttft = time.perf_counter() - began
    document = orjson.loads(body)
    usage = document.get("usage") if isinstance(document, dict) else None
    if usage:
        record.tokens = int(usage.get("completion_tokens") or usage.get("total_tokens") or 0)
    record.chunks = 1


async def send(session: aiohttp.ClientSession, base_url: str, call: Call, start: float) -> Record:
    """One request; never raises (failures land in the record's `error`)."""
    record = Record(start=start)
    headers = {"content-type": "application/json", **dict(call.headers)}
    began = time.perf_counter()
    try:
        async with session.post(base_url + call.path, data=call.body, headers=headers) as resp:
            record.status = resp.status
            if resp.status != 200:
                record.error = f"HTTP {resp.status}: {(await resp.read())[:200]!r}"
            elif call.stream:
                await _read_stream(resp, record, began)
            else:
                await _read_whole(resp, record, began)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        record.error = f"{type(exc).__name__}: {exc}"[:300]
    record.e2e = time.perf_counter() - began
    return record


async def closed_loop(
    session: aiohttp.ClientSession,
    base_url: str,
    workload: Workload,
    *,
    concurrency: int,
    duration: float,
    max_requests: int,
    sink: Sink,
    progress: Progress | None = None,
) -> float:
    """`concurrency` callers until `duration` seconds or `max_requests` requests have gone
    by; returns the elapsed time (to the end of the last request)."""
    numbers = iter(range(max_requests))
    t0 = time.perf_counter()
    deadline = t0 + duration

    async def caller() -> None:
        for number in numbers:
            if time.perf_counter() >= deadline:
                return
            call = workload(number)
            sink(await send(session, base_url, call, time.perf_counter() - t0))
            if progress is not None:
                progress(1)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return time.perf_counter() - t0


async def open_loop(
    session: aiohttp.ClientSession,
    base_url: str,
    workload: Workload,
    *,
    rate: float,
    duration: float,
    max_requests: int,
    sink: Sink,
    progress: Progress | None = None,
    max_in_flight: int = 1024,
    seed: int = 0,
) -> float:
    """Poisson arrivals at `rate` per second for `duration` seconds (at most `max_requests`).
    An arrival that finds `max_in_flight` requests open is recorded as an error, not queued:
    the load stays open. Waits for the stragglers, at most the read timeout."""
    rng = random.Random(seed)
    tasks: set[asyncio.Task[None]] = set()
    t0 = time.perf_counter()
    due = t0

    async def one(number: int, start: float) -> None:
        sink(await send(session, base_url, workload(number), start))
        if progress is not None:
            progress(1)

    for number in range(max_requests):
        due += rng.expovariate(rate)
        if due - t0 > duration:
            break
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        if len(tasks) >= max_in_flight:
            sink(Record(start=due - t0, error="client saturated: too many in flight"))
            continue
        task = asyncio.create_task(one(number, due - t0))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        _, late = await asyncio.wait(tasks, timeout=120)
        for task in late:
            task.cancel()
    return time.perf_counter() - t0
