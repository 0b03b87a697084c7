"""The counting rules of rate limits, shared by the in-process store and the Redis script.

Requests and tokens per minute, and tokens per UTC day, are fixed windows aligned to the clock
(of Redis, when shared): a window holds its number `w` and its count `n`. Admission checks every
limit and, only if all pass, counts the request and reserves the token estimate; settling adds
the difference between the real tokens and the estimate to the windows admission charged.
Concurrency is the set of requests admitted and not yet released; in Redis each member expires,
so a replica that dies mid-request cannot hold a slot forever.
"""

from __future__ import annotations

from dataclasses import dataclass

MINUTE_MS = 60_000
DAY_MS = 86_400_000

# One Redis round trip per admission. KEYS: rpm, tpm, day, concurrency. ARGV: rpm, tpm, day,
# concurrency limits (-1: none), token estimate, request id, concurrency slot ttl (ms).
ADMIT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local est = tonumber(ARGV[5])
local function window(key, size)
  local w = math.floor(now / size)
  local cur = redis.call('HMGET', key, 'w', 'n')
  local n = 0
  if tonumber(cur[1]) == w then n = tonumber(cur[2]) or 0 end
  return n, (w + 1) * size - now, w
end
local rl, tl, dl, cl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local rn, rr, rw = window(KEYS[1], 60000)
local tn, tr, tw = window(KEYS[2], 60000)
local dn, dr, dw = window(KEYS[3], 86400000)
local c = 0
if cl >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  c = redis.call('ZCARD', KEYS[4])
end
local reason, retry = '', 0
if rl >= 0 and rn + 1 > rl then reason, retry = 'rpm', rr
elseif tl >= 0 and tn > 0 and tn + est > tl then reason, retry = 'tpm', tr
elseif dl >= 0 and dn > 0 and dn + est > dl then reason, retry = 'tokens_per_day', dr
elseif cl >= 0 and c >= cl then reason, retry = 'concurrency', 1000
end
if reason == '' then
  if rl >= 0 then
    rn = rn + 1
    redis.call('HSET', KEYS[1], 'w', rw, 'n', rn)
    redis.call('PEXPIRE', KEYS[1], rr + 1000)
  end
  if tl >= 0 then
    tn = tn + est
    redis.call('HSET', KEYS[2], 'w', tw, 'n', tn)
    redis.call('PEXPIRE', KEYS[2], tr + 1000)
  end
  if dl >= 0 then
    redis.call('HSET', KEYS[3], 'w', dw, 'n', dn + est)
    redis.call('PEXPIRE', KEYS[3], dr + 1000)
  end
  if cl >= 0 then
    redis.call('ZADD', KEYS[4], now + tonumber(ARGV[7]), ARGV[6])
    redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[7]))
  end
end
return {reason, retry, rn, rr, tn, tr, tw, dw}
"""

# Settlements of many requests in one call (batched by server/tenancy/settler.py). KEYS: tpm,
# day, concurrency per request; ARGV: token delta, tpm window, day window, request id per request.
SETTLE_LUA = """
for i = 0, #KEYS / 3 - 1 do
  local tpm, day, slots = KEYS[i * 3 + 1], KEYS[i * 3 + 2], KEYS[i * 3 + 3]
  local d = tonumber(ARGV[i * 4 + 1])
  if d ~= 0 then
    if redis.call('HGET', tpm, 'w') == ARGV[i * 4 + 2] then redis.call('HINCRBY', tpm, 'n', d) end
    if redis.call('HGET', day, 'w') == ARGV[i * 4 + 3] then redis.call('HINCRBY', day, 'n', d) end
  end
  redis.call('ZREM', slots, ARGV[i * 4 + 4])
end
return #KEYS / 3
"""


@dataclass(slots=True)
class Verdict:
    """What one admission decided, and what the response headers say. (Not frozen: a frozen
    dataclass's constructor costs twice as much, on every request.)"""

    reason: str  # '' when admitted, else the limit hit: rpm, tpm, tokens_per_day, concurrency
    retry_ms: int
    requests_used: int
    requests_reset_ms: int
    tokens_used: int
    tokens_reset_ms: int
    tpm_window: int
    day_window: int

    @classmethod
    def from_script(cls, raw: list[object]) -> Verdict:
        reason = raw[0].decode() if isinstance(raw[0], bytes) else str(raw[0])
        numbers = [int(x) for x in raw[1:]]  # type: ignore[call-overload]
        return cls(reason, *numbers)


class _Counts:
    """One tenant's windows in process: number and count of its requests-per-minute,
    tokens-per-minute and tokens-per-day windows (-1: none counted yet), and the requests it
    has running."""

    __slots__ = ("dn", "dw", "rn", "running", "rw", "tn", "tw")

    def __init__(self) -> None:
        self.rw = self.tw = self.dw = -1
        self.rn = self.tn = self.dn = 0
        self.running: set[str] = set()


class LocalWindows:
    """The same rules in this process, for one gateway without Redis (or one failing open).
    A tenant's counts are found by its concurrency key, which admission and settlement both
    name."""

    def __init__(self) -> None:
        self._counts: dict[str, _Counts] = {}

    def admit(
        self, keys: tuple[str, str, str, str], limits: tuple[int, int, int, int], est: int,
        request_id: str, now: int,
    ) -> Verdict:  # fmt: skip
        counts = self._counts.get(keys[3])
        if counts is None:
            counts = self._counts[keys[3]] = _Counts()
        rl, tl, dl, cl = limits
        minute, day = now // MINUTE_MS, now // DAY_MS
        minute_left = (minute + 1) * MINUTE_MS - now
        rn = counts.rn if counts.rw == minute else 0
        tn = counts.tn if counts.tw == minute else 0
        dn = counts.dn if counts.dw == day else 0
        running = counts.running
        reason, retry = "", 0
        if 0 <= rl < rn + 1:
            reason, retry = "rpm", minute_left
        elif tl >= 0 and tn > 0 and tn + est > tl:
            reason, retry = "tpm", minute_left
        elif dl >= 0 and dn > 0 and dn + est > dl:
            reason, retry = "tokens_per_day", (day + 1) * DAY_MS - now
        elif 0 <= cl <= len(running):
            reason, retry = "concurrency", 1000
        if not reason:
            if rl >= 0:
                rn += 1
                counts.rw, counts.rn = minute, rn
            if tl >= 0:
                tn += est
                counts.tw, counts.tn = minute, tn
            if dl >= 0:
                counts.dw, counts.dn = day, dn + est
            if cl >= 0:
                running.add(request_id)
        return Verdict(reason, retry, rn, minute_left, tn, minute_left, minute, day)

    def settle(self, keys: tuple[str, str, str], delta: int, verdict: Verdict, rid: str) -> None:
        counts = self._counts.get(keys[2])
        if counts is None:
            return
        if delta:
            if counts.tw == verdict.tpm_window:
                counts.tn += delta
            if counts.dw == verdict.day_window:
                counts.dn += delta
        counts.running.discard(rid)
