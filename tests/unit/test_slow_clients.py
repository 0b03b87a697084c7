"""Adaptive deadlines for slow clients (server/slow_clients.py, server/http_server.py): a lone
slow client keeps the server's timeouts; under pressure, unfinished heads and bodies must keep
moving, and are closed within a second of stalling. Real sockets against uvicorn, as in
test_http_server.py."""

from __future__ import annotations

import asyncio
import time

import pytest

from server.settings import LimitsSettings
from server.slow_clients import PendingReads
from tests.unit.test_http_server import POST, _answer, _open, serving

# Long normal timeouts, so that only the pressure rule can end a case within the test's bounds.
LIMITS: dict[str, float] = {
    "header_timeout": 20,
    "body_timeout": 20,
    "max_connections": 500,
    "pressure_pending": 8,
    "pressure_timeout": 0.3,
    "pressure_min_rate": 200,
}


class Conn:
    def __init__(self, number: int = 0, log: list[int] | None = None) -> None:
        self.number, self.log = number, log if log is not None else []

    def shorten(self) -> None:
        self.log.append(self.number)


def test_pressure_shortens_every_waiting_connection_once_oldest_first() -> None:
    pending = PendingReads(pending_limit=2, near_cap=100)
    order: list[int] = []
    conns = [Conn(i, order) for i in range(4)]
    assert not pending.add(conns[0], 1)
    assert not pending.add(conns[1], 2)
    assert pending.add(conns[2], 3)  # the third is over the limit: it and the others
    assert order == [0, 1]
    assert pending.add(conns[3], 4)
    assert order == [0, 1]  # each shortened once
    for conn in conns:
        pending.discard(conn)
    assert pending.count == 0
    assert not pending.add(conns[0], 1)  # pressure over: judged afresh


def test_connections_near_the_cap_are_pressure_too() -> None:
    limits = LimitsSettings(max_connections=10, pressure_connection_share=0.5)
    pending = PendingReads.from_limits(limits)
    assert not pending.add(Conn(), 4)
    assert pending.add(Conn(), 5)


async def test_a_lone_stalled_body_keeps_the_full_body_timeout() -> None:
    async with serving(LIMITS) as port:
        reader, writer = await _open(port)
        writer.write(POST % 100 + b"x" * 10)
        with pytest.raises(TimeoutError):
            await _answer(reader, within=1.5)  # five times the pressure timeout
        writer.close()


async def _stalled(port: int, count: int, payload: bytes) -> list[bytes]:
    conns = []
    for _ in range(count):
        reader, writer = await _open(port)
        writer.write(payload)
        conns.append((reader, writer))
    try:
        return await asyncio.gather(*(_answer(reader) for reader, _ in conns))
    finally:
        for _, writer in conns:
            writer.close()


@pytest.mark.parametrize(
    "payload", [POST % 100 + b"x" * 10, b"POST / HTTP/1.1\r\nhost: x\r\n"], ids=["body", "head"]
)
async def test_many_stalled_requests_are_all_closed_quickly(payload: bytes) -> None:
    async with serving(LIMITS) as port:
        started = time.perf_counter()
        # 40 > pressure_pending: every one of them gets 408, not only those over the limit.
        answers = await _stalled(port, 40, payload)
        took = time.perf_counter() - started
        assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), answers
        assert took < 3, took  # 20 s without pressure; 0.3 s idle plus a loaded machine's lag
        # The server still serves: a whole request on a new connection.
        reader, writer = await _open(port)
        writer.write(POST % 2 + b"ok")
        assert (await asyncio.wait_for(reader.readuntil(b"got 2"), 5)).startswith(b"HTTP/1.1 200")
        writer.close()


async def test_under_pressure_a_trickle_below_the_minimum_rate_is_closed() -> None:
    async with serving(LIMITS) as port:
        crowd = asyncio.ensure_future(_stalled(port, 20, POST % 100 + b"x"))
        await asyncio.sleep(0.05)
        reader, writer = await _open(port)
        writer.write(POST % 10_000)
        read = asyncio.ensure_future(_answer(reader))
        started = time.perf_counter()
        while not read.done() and time.perf_counter() - started < 5:
            writer.write(b"x")  # never idle for pressure_timeout, but 10 B/s < 200 B/s
            await asyncio.sleep(0.1)
        assert (await read).startswith(b"HTTP/1.1 408 ")
        assert time.perf_counter() - started < 3
        await crowd
        writer.close()


async def test_connections_near_the_cap_get_the_short_rule() -> None:
    # 15 silent connections of 20 allowed: pressure at share 0.5 (10), though only 15 pending.
    limits = {**LIMITS, "pressure_pending": 1000, "max_connections": 20}
    async with serving({**limits, "pressure_connection_share": 0.5}) as port:
        started = time.perf_counter()
        answers = await _stalled(port, 15, b"")
        assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers)
        assert time.perf_counter() - started < 3
