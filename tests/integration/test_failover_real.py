"""Failover on the real stack: two vLLM CPU workers, steady load, one worker SIGKILLed."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import httpx
import pytest

from tests.integration.conftest import RunningStack, processes

pytestmark = pytest.mark.stack

LOAD_SECONDS = 60.0
CONCURRENCY = 8
KILL_AFTER = 15.0
PROBE_INTERVAL = 2.0  # what `ragway up` configures its gateway with


def _worker_pid(port: int) -> int:
    """The vLLM API server listening on `port` (it leads its own process group)."""
    for pid, cmdline in processes():
        if "vllm.entrypoints.openai.api_server" in cmdline and f"--port {port} " in cmdline:
            return pid
    raise LookupError(f"no vLLM worker on port {port}")


def _worker_state(stack: RunningStack, name: str) -> dict[str, object]:
    ready = httpx.get(stack.base_url.removesuffix("/v1") + "/readyz", timeout=5).json()
    state: dict[str, object] = next(w for w in ready["workers"] if w["id"] == name)
    return state


def _routable(state: dict[str, object]) -> bool:
    return bool(state["up"]) and not state["ejected"]


async def _load(base_url: str, until: float, outcomes: list[int | str]) -> None:
    body = {"model": "smollm2-135m-instruct", "max_tokens": 8,
            "messages": [{"role": "user", "content": "Name a planet."}]}  # fmt: skip

    async def client_loop(client: httpx.AsyncClient) -> None:
        while time.monotonic() < until:
            try:
                response = await client.post("/chat/completions", json=body)
                outcomes.append(response.status_code)
            except httpx.HTTPError as exc:
                outcomes.append(type(exc).__name__)

    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(CONCURRENCY)))


@pytest.mark.timeout(1500)
def test_sigkill_one_worker_under_load(stack: RunningStack) -> None:
    victim_port, victim = stack.chat_ports[1], "vllm-1"
    outcomes: list[int | str] = []
    until = time.monotonic() + LOAD_SECONDS
    loader = threading.Thread(target=asyncio.run, args=(_load(stack.base_url, until, outcomes),))
    loader.start()
    time.sleep(KILL_AFTER)
    served_before_kill = len(outcomes)
    os.killpg(_worker_pid(victim_port), signal.SIGKILL)
    killed_at = time.monotonic()
    while _routable(_worker_state(stack, victim)):
        assert time.monotonic() - killed_at < 10, "the dead worker stayed in rotation"
        time.sleep(0.05)
    out_after = time.monotonic() - killed_at
    loader.join()
    failures = [o for o in outcomes if o != 200]
    print(f"\n{len(outcomes)} requests at concurrency {CONCURRENCY} over {LOAD_SECONDS:.0f} s "
          f"({served_before_kill} before the kill); {len(failures)} failed; dead worker out of "
          f"rotation {out_after:.2f} s after SIGKILL")  # fmt: skip
    assert failures == []
    assert out_after < 2.0

    # `ragway up` restarts the dead worker; the gateway must re-admit it within 2 probes.
    deadline = time.monotonic() + 1200
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{victim_port}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the worker was not restarted"
        time.sleep(0.2)
    healthy_at = time.monotonic()
    while not _routable(_worker_state(stack, victim)):
        assert time.monotonic() - healthy_at < 2 * PROBE_INTERVAL + 1, "not re-admitted"
        time.sleep(0.05)
    back_after = time.monotonic() - healthy_at
    print(
        f"worker restarted {healthy_at - killed_at:.0f} s after the kill; back in rotation "
        f"{back_after:.2f} s after it answered /health (probe interval {PROBE_INTERVAL:.0f} s)"
    )
    assert back_after <= 2 * PROBE_INTERVAL
