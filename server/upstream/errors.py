"""Translate transport exceptions into ragway's error tree, once, at the upstream boundary.

In production they are server/upstream/h1.py's own; with an injected httpx transport (tests),
httpx's. An exception's cause is looked up first: a transport that wraps another's exceptions
is still read by what really happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from server.errors import (
    RagwayError,
    UpstreamBadResponse,
    UpstreamConnectionLost,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from server.upstream import h1

# First match wins, so subclasses come before their bases.
_TABLE: tuple[tuple[type[BaseException], type[UpstreamError], str], ...] = (
    (h1.ConnectFailed, UpstreamUnavailable, "worker unreachable"),
    (h1.PoolTimeout, UpstreamUnavailable, "no connection to the worker available"),
    (h1.ReadTimeout, UpstreamTimeout, "worker timed out"),
    (h1.ConnectionLost, UpstreamConnectionLost, "worker closed the connection"),
    (h1.BadResponse, UpstreamBadResponse, "worker sent a broken response"),
    (h1.InvalidRequest, UpstreamBadResponse, "request not sendable to the worker"),
    # Reset while writing: a kept-alive connection the worker was closing.
    (ConnectionError, UpstreamConnectionLost, "connection to worker failed"),
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
