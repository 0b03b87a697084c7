from __future__ import annotations

import aiohttp
import httpx
import pytest

from server.errors import (
    UpstreamBadResponse,
    UpstreamConnectionLost,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from server.upstream.errors import translate, upstream_errors


def _wrapped(cause: BaseException, outer: Exception) -> Exception:
    """A transport that wraps aiohttp (as httpx-aiohttp does): an httpx exception `from` the
    aiohttp one."""
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectError("x"), UpstreamUnavailable),
        (httpx.PoolTimeout("x"), UpstreamUnavailable),
        (httpx.ReadTimeout("x"), UpstreamTimeout),
        (httpx.RemoteProtocolError("x"), UpstreamBadResponse),
        (TimeoutError(), UpstreamTimeout),
        # httpx-aiohttp calls a worker dropping a kept-alive connection a ConnectTimeout.
        (
            _wrapped(aiohttp.ServerDisconnectedError(), httpx.ConnectTimeout("x")),
            UpstreamConnectionLost,
        ),
        (_wrapped(aiohttp.ClientPayloadError("cut"), httpx.ReadError("x")), UpstreamBadResponse),
        (_wrapped(aiohttp.SocketTimeoutError(), httpx.ReadTimeout("x")), UpstreamTimeout),
        # Writing onto a kept-alive connection the worker is closing: retried on it once.
        (
            _wrapped(
                aiohttp.ClientOSError(None, "Can not write request body"), httpx.ConnectTimeout("x")
            ),
            UpstreamConnectionLost,
        ),
    ],
)
def test_translation_table(exc: Exception, expected: type) -> None:
    assert type(translate(exc)) is expected


def test_foreign_errors_are_left_alone() -> None:
    assert translate(KeyError("x")) is None
    with pytest.raises(KeyError), upstream_errors("w"):
        raise KeyError("x")


def test_context_manager_names_the_worker() -> None:
    with (
        pytest.raises(UpstreamUnavailable, match="worker http://w:1"),
        upstream_errors("http://w:1"),
    ):
        raise httpx.ConnectError("refused")
