"""Translate transport exceptions into ragway's error tree, once, at the upstream boundary.

In production they are aiohttp's own (server/upstream/transport.py); with an injected httpx
transport (tests), httpx's. An exception's cause is looked up first: a transport that wraps
another's exceptions (as httpx-aiohttp did, coarsely: any `aiohttp.ClientConnectionError`
became `httpx.ConnectTimeout`) is still read by what really happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import httpx

from server.errors import (
    RagwayError,
    UpstreamBadResponse,
    UpstreamConnectionLost,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

# First match wins, so subclasses come before their bases.
_TABLE: tuple[tuple[type[BaseException], type[UpstreamError], str], ...] = (
    (aiohttp.ClientConnectorError, UpstreamUnavailable, "worker unreachable"),
    (aiohttp.ServerTimeoutError, UpstreamTimeout, "worker timed out"),
    (aiohttp.ServerDisconnectedError, UpstreamConnectionLost, "worker closed the connection"),
    (aiohttp.ClientPayloadError, UpstreamBadResponse, "worker sent a broken body"),
    (aiohttp.ClientResponseError, UpstreamBadResponse, "worker sent a broken response"),
    # Reset, or "Can not write request body": a kept-alive connection the worker was closing.
    (aiohttp.ClientOSError, UpstreamConnectionLost, "connection to worker failed"),
    (asyncio.TimeoutError, UpstreamTimeout, "worker timed out"),
    (httpx.ConnectError, UpstreamUnavailable, "worker unreachable"),
    (httpx.PoolTimeout, UpstreamUnavailable, "no connection to the worker available"),
    (httpx.TimeoutException, UpstreamTimeout, "worker timed out"),
    (httpx.TransportError, UpstreamBadResponse, "worker sent a broken response"),
    (httpx.DecodingError, UpstreamBadResponse, "worker sent an undecodable body"),
)


def translate(exc: BaseException) -> UpstreamError | None:
    """The ragway error for a transport exception, or None if it is not one."""
    for candidate in (exc.__cause__, exc):
        if candidate is None:
            continue
        for foreign, ours, what in _TABLE:
            if isinstance(candidate, foreign):
                return ours(f"{what}: {type(candidate).__name__}: {candidate}".rstrip(": "))
    return None


@contextmanager
def upstream_errors(worker: str) -> Iterator[None]:
    """Re-raise transport exceptions from inside the block as UpstreamError subclasses."""
    try:
        yield
    except RagwayError:
        raise
    except Exception as exc:
        mapped = translate(exc)
        if mapped is None:
            raise
        mapped.message = f"{mapped.message} (worker {worker})"
        mapped.args = (mapped.message,)
        raise mapped from exc
