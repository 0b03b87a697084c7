"""Which slow clients lose their time under pressure (server/http_server.py uses it).

A slow client alone keeps the server's full timeouts (`limits.header_timeout`,
`limits.body_timeout`): a phone on a bad link may pause for seconds. Many connections with an
unfinished request head or body at once are an attack (slowloris, slow POST) or an overload,
and each holds a slot of `limits.max_connections`. So, as Apache's mod_qos does with
QS_SrvMinDataRate, the short rule applies only under pressure: once more than
`limits.pressure_pending` connections have an unfinished head or body, or the open connections
reach `limits.pressure_connection_share` of `limits.max_connections`, every connection with an
unfinished head or body must make progress at least every `limits.pressure_timeout` seconds and,
from `pressure_timeout` after the pressure reached it on, have averaged at least
`limits.pressure_min_rate` bytes/s since then, or get a 408 and be closed. The normal deadlines
still apply too. Deadlines run from each connection's last read, so the ones idle longest go
first; when pressure begins, the waiting connections are shortened oldest first.

A connection marked under pressure keeps the short rule until its head or body is complete,
even if the pressure ends meanwhile (closing some of 200 stalled connections must not hand the
rest their long timeouts back); its next request is judged afresh.
"""

from __future__ import annotations

import math
from typing import Protocol

from server.settings import LimitsSettings


class Shortenable(Protocol):
    def shorten(self) -> None:
        """From now on, the pressure deadlines apply to this connection's unfinished read."""


class PendingReads:
    """The connections of one server whose request head or body is unfinished. `add` and
    `discard` are O(1); entering pressure shortens each waiting connection once."""

    def __init__(self, pending_limit: int, near_cap: int) -> None:
        self._limit = pending_limit
        self._near_cap = near_cap
        self._count = 0
        # Pending connections not yet shortened, oldest first (dicts keep insertion order).
        self._calm: dict[Shortenable, None] = {}

    @classmethod
    def from_limits(cls, limits: LimitsSettings) -> PendingReads:
        share = limits.pressure_connection_share
        return cls(limits.pressure_pending, max(1, math.ceil(limits.max_connections * share)))

    @property
    def count(self) -> int:
        return self._count

    def add(self, conn: Shortenable, open_connections: int) -> bool:
        """`conn` now has an unfinished head or body. True when it is under pressure (the
        caller applies the short rule to itself); the others waiting are shortened here."""
        self._count += 1
        if self._count > self._limit or open_connections >= self._near_cap:
            calm, self._calm = self._calm, {}
            for other in calm:
                other.shorten()
            return True
        self._calm[conn] = None
        return False

    def discard(self, conn: Shortenable) -> None:
        """`conn`'s head or body is complete, or it closed (call once per `add`)."""
        self._count -= 1
        self._calm.pop(conn, None)
