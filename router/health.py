"""Per-worker health state: up or down, why, and since when."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Health:
    up: bool = False
    reason: str = "not probed yet"
    since: float = field(default_factory=time.time)

    def set(self, up: bool, reason: str, clock: Callable[[], float] = time.time) -> bool:
        """Record a probe result; returns True when the state flipped."""
        flipped = up != self.up
        if flipped:
            self.since = clock()
        self.up = up
        self.reason = reason
        return flipped
