from __future__ import annotations

import httpx
import pytest

from server.errors import (
    UpstreamBadResponse,
    UpstreamConnectionLost,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from server.upstream import h1
from server.upstream.errors import translate, upstream_errors


def _wrapped(cause: BaseException, outer: Exception) -> Exception:
    """A transport that wraps another's exceptions: the outer one `from` the real one."""
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
        (h1.ConnectFailed("x"), UpstreamUnavailable),
        (h1.PoolTimeout("x"), UpstreamUnavailable),
        (h1.ReadTimeout("x"), UpstreamTimeout),
        (h1.ConnectionLost("x"), UpstreamConnectionLost),
        (h1.BadResponse("x"), UpstreamBadResponse),
        (h1.InvalidRequest("x"), UpstreamBadResponse),
        # Reset while writing onto a kept-alive connection the worker is closing.
        (ConnectionResetError(), UpstreamConnectionLost),
        # The cause is read first: what really happened, whatever the wrapper says.
        (_wrapped(h1.ConnectionLost("x"), httpx.ConnectTimeout("x")), UpstreamConnectionLost),
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
