"""Per-worker health: what the active probe last said (up or down, why, since when), and any
passive ejection after failed requests, with exponential back-off before re-admission."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Health:
    up: bool = False
    reason: str = "not probed yet"
    since: float = field(default_factory=time.time)
    # Passive ejection: out of rotation until this monotonic time, however probes go.
    ejected_until: float = 0.0
    ejections: int = 0  # consecutive ones; reset by a request that succeeds
    failed_probes: int = 0  # consecutive ones; reset by a probe that succeeds

    def set(
        self,
        up: bool,
        reason: str,
        *,
        definite: bool = True,
        threshold: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> bool:
        """Record a probe result; returns True when the state flipped. A failure that may pass
        (a timeout: the worker may only be busy) takes an up worker down only at the
        `threshold`-th in a row; a definite one (refused, an error status) at once."""
        self.failed_probes = 0 if up else self.failed_probes + 1
        if self.up and not up and not definite and self.failed_probes < threshold:
            self.reason = f"probe failed ({self.failed_probes} of {threshold} in a row): {reason}"
            return False
        flipped = up != self.up
        if flipped:
            self.since = clock()
        self.up = up
        self.reason = reason
        return flipped

    def eject(self, reason: str, now: float, base: float, cap: float) -> float:
        """Take the worker out for base * 2^(n-1) seconds (at most `cap`) after its n-th
        consecutive ejection; returns how long."""
        self.ejections += 1
        duration = min(cap, base * 2.0 ** (self.ejections - 1))
        self.ejected_until = max(self.ejected_until, now + duration)
        self.reason = f"ejected for {duration:g} s: {reason}"
        return duration

    def succeeded(self) -> None:
        self.ejections = 0

    def routable(self, now: float) -> bool:
        return self.up and now >= self.ejected_until
