"""The two tenants of the flow-control benchmark, and one phase of it.

- The interactive tenant sends one short streamed chat every `interval` seconds (a fixed
  cadence, each request on its own: a slow answer does not delay the next), and records each
  one's time to first token; one without a first token after `give_up` seconds is abandoned
  (counted as "client gave up"), which bounds a phase where nothing gets through.
- The batch tenant keeps `flood` long streams open: each of its callers sends the next stream
  when the last one ends. A refusal (429, 503) is counted by status and reason, and the caller
  sends again after the `Retry-After` it was given (at most `retry_cap` seconds), so the flood
  keeps pressing. Every chunk's arrival is timed with the tokens it carries, so its
  throughput over the recorded window counts the tokens that arrived in it, finished or not.
  A chunk's tokens are the growth of its `usage.completion_tokens` where the stream sends
  usage with every chunk (`stream_options.continuous_usage_stats`, as the batch tenant asks:
  a flow-controlled batch stream carries several tokens per chunk, see vLLM's
  `stream_interval`), else one per text event.

A phase: the flood starts, runs `ramp` seconds unrecorded, then the interactive tenant sends
for `duration` seconds; the flood keeps running until the last interactive answer has begun,
then stops (every stream is closed: the gateway and the engine drop them).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from benchmarks.common import percentile
from benchmarks.loadgen import new_session

Gauges = Callable[[], Awaitable[dict[str, float]]]
_JSON = {"content-type": "application/json"}
_COMPLETION_TOKENS = re.compile(rb'"completion_tokens":\s*(\d+)')


@dataclass(frozen=True, slots=True)
class Load:
    interval: float  # seconds between interactive requests
    duration: float  # recorded seconds
    ramp: float  # the flood's unrecorded start
    flood: int  # batch streams kept open (0: the interactive tenant alone)
    interactive_body: bytes
    batch_body: bytes
    retry_cap: float = 1.0
    give_up: float = 60.0  # an interactive chat without its first token by then is abandoned


@dataclass(slots=True)
class Outcome:
    status: int = 0
    reason: str | None = None
    ttft: float = math.nan
    tokens: int = 0
    error: str | None = None
    retry_after: float = math.nan
    elapsed: float = math.nan  # until the answer or the refusal ended


@dataclass(slots=True)
class Tally:
    """What one tenant got in a phase."""

    outcomes: list[tuple[float, Outcome]] = field(default_factory=list)  # (sent at, outcome)
    # (since t0, tokens) per chunk that carried tokens
    token_times: list[tuple[float, int]] = field(default_factory=list)
    done_times: list[float] = field(default_factory=list)  # each completed request, since t0


def _reason(response: aiohttp.ClientResponse, body: bytes) -> str:
    """The refusal's reason: a `*reason*` header when the gateway sends one, else the OpenAI
    error's code or type."""
    for name, value in response.headers.items():
        if "reason" in name.lower():
            return value
    with contextlib.suppress(ValueError, AttributeError):
        error = orjson.loads(body).get("error") or {}
        return str(error.get("code") or error.get("type") or "")
    return ""


def chunk_tokens(line: bytes, counted: int) -> tuple[int, bool]:
    """The new tokens one `data:` line of a chat stream carries, given `counted` so far, and
    whether it carries text: the growth of its cumulative `completion_tokens` where it has
    usage, else 1 for a text event. A final usage chunk after per-token events adds only what
    the events missed."""
    text = b'"content":"' in line and b'"content":""' not in line
    found = _COMPLETION_TOKENS.search(line)
    if found is None:
        return (1 if text else 0), text
    return max(0, int(found.group(1)) - counted), text


async def stream(
    session: aiohttp.ClientSession, url: str, body: bytes, on_token: Callable[[int], None]
) -> Outcome:
    """One streamed chat; `on_token(n)` at each chunk that carries n tokens (see
    `chunk_tokens`). Never raises but on cancellation."""
    out = Outcome()
    began = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=_JSON) as response:
            out.status = response.status
            if response.status != 200:
                out.reason = _reason(response, await response.read())
                out.error = f"HTTP {response.status} {out.reason}"
                out.elapsed = time.perf_counter() - began
                retry = response.headers.get("retry-after", "")
                if retry.replace(".", "", 1).isdigit():
                    out.retry_after = float(retry)
                return out
            async for line in response.content:
                if not line.startswith(b"data: {"):
                    continue
                if b'"error"' in line and b'"content":"' not in line:
                    out.error = line[6:206].decode(errors="replace")
                    continue
                new, text = chunk_tokens(line, out.tokens)
                if text and math.isnan(out.ttft):
                    out.ttft = time.perf_counter() - began
                if new:
                    out.tokens += new
                    on_token(new)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"[:200]
    out.elapsed = time.perf_counter() - began
    return out


async def _batch_caller(
    session: aiohttp.ClientSession, url: str, load: Load, tally: Tally, t0: float
) -> None:
    def token(count: int) -> None:
        tally.token_times.append((time.perf_counter() - t0, count))

    while True:
        sent = time.perf_counter() - t0
        out = await stream(session, url, load.batch_body, token)
        tally.outcomes.append((sent, out))
        if out.status == 200 and out.error is None:
            tally.done_times.append(time.perf_counter() - t0)
        elif out.status == 200:
            await asyncio.sleep(0.5)
        else:  # refused: wait as told, then press again
            wait = out.retry_after if not math.isnan(out.retry_after) else 0.5
            await asyncio.sleep(min(load.retry_cap, max(0.05, wait)))


async def _interactive(
    session: aiohttp.ClientSession, url: str, load: Load, tally: Tally, t0: float
) -> None:
    tasks: list[asyncio.Task[None]] = []

    async def one(sent: float) -> None:
        try:
            out = await asyncio.wait_for(
                stream(session, url, load.interactive_body, lambda _: None), load.give_up
            )
        except TimeoutError:  # a person would have left: no need to wait for the gateway's 504
            out = Outcome(reason="gave up", error="no first token", elapsed=load.give_up)
        tally.outcomes.append((sent, out))

    start = time.perf_counter()
    for number in range(max(1, int(load.duration / load.interval))):
        await asyncio.sleep(max(0.0, start + number * load.interval - time.perf_counter()))
        tasks.append(asyncio.create_task(one(time.perf_counter() - t0)))
    await asyncio.gather(*tasks)


async def _sample(gauges: Gauges, into: list[dict[str, float]], t0: float) -> None:
    while True:
        with contextlib.suppress(Exception):  # a missed sample is only a gap in the series
            into.append({"t": time.perf_counter() - t0, **(await gauges())})
        await asyncio.sleep(1.0)


async def run_phase(
    base_url: str, headers: tuple[dict[str, str], dict[str, str]], load: Load, gauges: Gauges
) -> dict[str, Any]:
    """One phase: the raw tallies and the recorded window, since the phase's start."""
    url = base_url + "/chat/completions"
    people, batch = Tally(), Tally()
    samples: list[dict[str, float]] = []
    async with (
        new_session(64, headers[0], read_timeout=600) as interactive_session,
        new_session(load.flood + 8, headers[1], read_timeout=600) as batch_session,
    ):
        t0 = time.perf_counter()
        background = [asyncio.create_task(_sample(gauges, samples, t0))]
        background += [
            asyncio.create_task(_batch_caller(batch_session, url, load, batch, t0))
            for _ in range(load.flood)
        ]
        await asyncio.sleep(load.ramp if load.flood else 0.0)
        window = (time.perf_counter() - t0, time.perf_counter() - t0 + load.duration)
        await _interactive(interactive_session, url, load, people, t0)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
    return {"window": window, "interactive": people, "batch": batch, "samples": samples}


def figures(raw: dict[str, Any]) -> dict[str, Any]:
    """A phase's figures from run_phase's tallies."""
    low, high = raw["window"]
    span = high - low
    people: Tally = raw["interactive"]
    batch: Tally = raw["batch"]
    answered = [o for _, o in people.outcomes if o.status == 200 and o.error is None]
    ttft = [o.ttft for o in answered]
    unanswered = [o.elapsed for _, o in people.outcomes if o.status != 200 or o.error]
    refused = Counter(
        f"{o.status or 'client'} {o.reason or ''}".strip()
        for _, o in people.outcomes + batch.outcomes
        if o.status != 200
    )
    failed = [o.error for _, o in people.outcomes + batch.outcomes if o.status == 200 and o.error]
    samples = raw["samples"]
    in_window = [(t, n) for t, n in batch.token_times if low <= t < high]
    return {
        "window_s": span,
        "window": [low, high],
        "interactive_sent": len(people.outcomes),
        "interactive_ok": len(answered),
        "ttft_p50": percentile(ttft, 50),
        "ttft_p90": percentile(ttft, 90),
        "ttft_max": max(ttft) if ttft else math.nan,
        # An interactive chat that got no answer: how long it waited for its refusal.
        "interactive_failed_after_p50": percentile(unanswered, 50),
        "ttft_series": [[t, o.ttft] for t, o in people.outcomes],
        "batch_completed": sum(low <= t < high for t in batch.done_times),
        "batch_tokens_s": sum(n for _, n in in_window) / span,
        "batch_tokens_per_chunk": sum(n for _, n in in_window) / max(1, len(in_window)),
        "batch_token_series": _per_second(batch.token_times),
        "rejections": dict(refused),
        "stream_errors": len(failed),
        "first_stream_error": failed[0] if failed else None,
        "worker_waiting_max": max((s.get("waiting", 0.0) for s in samples), default=math.nan),
        "worker_running_max": max((s.get("running", 0.0) for s in samples), default=math.nan),
        "samples": samples,
    }


def _per_second(times: list[tuple[float, int]]) -> list[int]:
    counts: Counter[int] = Counter()
    for t, n in times:
        counts[int(t)] += n
    return [counts.get(second, 0) for second in range(max(counts, default=-1) + 1)]
