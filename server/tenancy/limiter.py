"""Admission against a principal's limits, in Redis when the gateway has one, else in process.

When Redis fails (refused, timed out), `fail_mode` decides: `open` counts in this process
instead (logged, and counted in `ragway_tenant_limit_fallbacks_total`), `closed` answers 503.
Every Redis call is bounded by the shared client's socket timeouts and, as a backstop, by
`asyncio.timeout`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from redis.exceptions import RedisError

from server.errors import LimitsUnavailable, QuotaExceeded, RateLimited
from server.shared_state import SharedState
from server.tenancy.principal import Limits, Principal
from server.tenancy.settler import Settler
from server.tenancy.windows import ADMIT_LUA, SETTLE_LUA, LocalWindows, Verdict

log = logging.getLogger("ragway.tenancy")


def _limit(value: int | None) -> int:
    return -1 if value is None else value


@dataclass(slots=True)
class Admission:
    principal: Principal
    request_id: str
    estimate: int
    verdict: Verdict
    shared: bool  # counted in Redis (settle there too)

    def headers(self) -> list[tuple[bytes, bytes]]:
        """OpenAI's x-ratelimit-* headers, for the limits the key has."""
        limits, v = self.principal.limits, self.verdict
        rpm, tpm = limits.rpm, limits.tpm
        out: list[tuple[bytes, bytes]] = []
        reset = _duration(v.requests_reset_ms)
        if rpm is not None:
            out += (
                (b"x-ratelimit-limit-requests", b"%d" % rpm),
                (b"x-ratelimit-remaining-requests", b"%d" % max(0, rpm - v.requests_used)),
                (b"x-ratelimit-reset-requests", reset),
            )
        if tpm is not None:
            if v.tokens_reset_ms != v.requests_reset_ms:  # the same minute's end, as a rule
                reset = _duration(v.tokens_reset_ms)
            out += (
                (b"x-ratelimit-limit-tokens", b"%d" % tpm),
                (b"x-ratelimit-remaining-tokens", b"%d" % max(0, tpm - v.tokens_used)),
                (b"x-ratelimit-reset-tokens", reset),
            )
        return out


def _duration(ms: int) -> bytes:
    """OpenAI writes resets as durations: `1s`, `6m0s`, `20ms`."""
    if ms < 1000:
        return b"%dms" % ms
    if ms < 60_000:
        return b"%.3gs" % (ms / 1000)
    return b"%dm%ds" % (ms // 60_000, ms // 1000 % 60)


class Limiter:
    def __init__(
        self,
        shared: SharedState,
        *,
        fail_mode: Literal["open", "closed"],
        slot_ttl: float,
        on_fallback: Callable[[str], None] | None = None,
    ):
        self._shared = shared
        self._fail_mode = fail_mode
        self._slot_ttl_ms = int(slot_ttl * 1000)
        self._local = LocalWindows()
        self._key_cache: dict[str, tuple[str, str, str, str]] = {}
        self._on_fallback = on_fallback
        self._timeout = shared.settings.timeout * 2
        self._last_warning = 0.0
        redis = shared.redis
        self._admit = redis.register_script(ADMIT_LUA) if redis is not None else None
        self._settler = (
            Settler(redis.register_script(SETTLE_LUA), self._timeout) if redis is not None else None
        )

    def start(self) -> None:
        if self._settler is not None:
            self._settler.start()

    async def aclose(self) -> None:
        if self._settler is not None:
            await self._settler.aclose()

    def _keys(self, name: str) -> tuple[str, str, str, str]:
        keys = self._key_cache.get(name)
        if keys is None:  # names come from the key file: a bounded cache
            k = self._shared.key
            keys = (
                k("rl", name, "rpm"),
                k("rl", name, "tpm"),
                k("rl", name, "day"),
                k("rl", name, "c"),
            )
            self._key_cache[name] = keys
        return keys

    async def admit(self, principal: Principal, estimate: int, request_id: str) -> Admission:
        limits = principal.limits
        keys = self._keys(principal.name)
        args = (_limit(limits.rpm), _limit(limits.tpm), _limit(limits.tokens_per_day),
                _limit(limits.concurrency))  # fmt: skip
        verdict, shared = None, False
        if self._admit is not None:
            try:
                async with asyncio.timeout(self._timeout):
                    raw = await self._admit(
                        keys=list(keys), args=[*args, estimate, request_id, self._slot_ttl_ms]
                    )
                verdict, shared = Verdict.from_script(raw), True
            except (RedisError, OSError, TimeoutError) as exc:
                self._redis_failed(exc)
        if verdict is None:
            now = int(time.time() * 1000)
            verdict = self._local.admit(keys, args, estimate, request_id, now)
        admission = Admission(principal, request_id, estimate, verdict, shared)
        if verdict.reason:
            raise _rejection(admission, limits)
        return admission

    def settle(self, admission: Admission, tokens: int) -> None:
        """Charge the real token count (instead of the estimate) and free the concurrency slot:
        in process at once, in Redis with the next batch."""
        _, tpm, day, slots = self._keys(admission.principal.name)
        delta = tokens - admission.estimate
        v = admission.verdict
        if admission.shared and self._settler is not None:
            self._settler.add((tpm, day, slots), delta, v.tpm_window, v.day_window,
                              admission.request_id)  # fmt: skip
        else:
            self._local.settle((tpm, day, slots), delta, v, admission.request_id)

    def _redis_failed(self, exc: BaseException) -> None:
        if self._on_fallback is not None:
            self._on_fallback(self._fail_mode)
        now = time.monotonic()
        if now - self._last_warning > 10:  # one line per 10 s, not one per request
            self._last_warning = now
            log.warning("redis failed for rate limits (fail mode %s): %r", self._fail_mode, exc)
        if self._fail_mode == "closed":
            raise LimitsUnavailable(
                "Rate limits cannot be checked right now; try again shortly."
            ) from None


def _rejection(admission: Admission, limits: Limits) -> RateLimited:
    v = admission.verdict
    error: RateLimited
    if v.reason == "tokens_per_day":
        error = QuotaExceeded(
            f"Key `{admission.principal.name}` has used its daily token budget "
            f"({limits.tokens_per_day})."
        )
    else:
        names = {"rpm": "requests per minute", "tpm": "tokens per minute",
                 "concurrency": "concurrent requests"}  # fmt: skip
        allowed = {"rpm": limits.rpm, "tpm": limits.tpm, "concurrency": limits.concurrency}
        error = RateLimited(
            f"Rate limit reached for key `{admission.principal.name}`: "
            f"{allowed[v.reason]} {names[v.reason]}. Try again in {v.retry_ms / 1000:.1f} s."
        )
    error.headers = {
        "retry-after": str(max(1, -(-v.retry_ms // 1000))),
        "retry-after-ms": str(v.retry_ms),
        **{k.decode(): val.decode() for k, val in admission.headers()},
    }
    error.reason = v.reason
    return error
