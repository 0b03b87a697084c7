"""Flow control as pure domain logic: which queued request goes to a worker next, and whether
a worker has room for one. No event loop and no clock of its own: the caller passes `now`.

One `FlowQueue` per model pool holds priority bands (0 first), served in strict priority.
Inside a band, requests are grouped into flows by fairness id (the tenant) and the flows share
by deficit round-robin (Shreedhar and Varghese, 1995) weighted by each request's estimated
tokens: a flow earns `quantum` tokens of credit per turn and spends a request's cost to send
it. Plain round-robin would count requests, so a tenant sending long prompts would get more of
the engine than one sending short ones; DRR shares the tokens, at O(1) per decision. Equal
costs reduce it to round-robin. Within a flow, requests go first come, first served.

Each band has a size cap and a TTL. Every band shares one TTL for all its tickets, so arrival
order is also expiry order and expiring is a pop from the front. A ticket lives in two ordered
dicts (its flow's and its band's arrivals), so cancelling it anywhere is O(1), and an emptied
flow is deleted at once: a cancelled ticket leaves nothing behind. Memory is bounded by the
caps. A full band refuses a request, unless another flow holds more of it: then that flow's
newest ticket is shed instead (longest-queue drop), so a flooding tenant cannot fill the band
and lock the others out. When the whole queue is at `max_total`, a request of a higher band
displaces the newest one of the lowest band below it: the sheddable class goes first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

from router.load import Load

W = TypeVar("W")
# Headroom of a worker without an in-flight limit.
UNBOUNDED = 1 << 30


class Outcome(Enum):
    QUEUED = "queued"
    ADMITTED = "admitted"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    SHED = "shed"


class BandFull(Exception):
    """The ticket's band is at its cap (or everything queued outranks it)."""


@dataclass(frozen=True, slots=True)
class BandLimits:
    cap: int
    ttl: float


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a worker counts as saturated; None switches a signal off."""

    max_in_flight: int | None = None
    max_waiting: float | None = None
    max_kv_cache_usage: float | None = None


def headroom(load: Load, limits: Thresholds) -> int:
    """How many more requests the worker takes now; 0 when saturated.

    An engine that reported and then went quiet past the stale limit counts as saturated,
    except that an idle worker still takes one request: a slow scraper must not stall the
    gateway. A worker with no engine stats at all (before its first scrape lands, or one
    that publishes no such gauges) is judged by ragway's own in-flight count alone, so a
    fresh start never waits on a scrape. An embedding worker's `waiting` is its batch queue,
    in inputs."""
    engine = load.engine
    if engine is None and load.engine_age is not None:  # stale
        return 1 if load.in_flight == 0 else 0
    if engine is not None:
        if limits.max_waiting is not None and engine.waiting >= limits.max_waiting:
            return 0
        if (
            limits.max_kv_cache_usage is not None
            and engine.kv_cache_usage >= limits.max_kv_cache_usage
        ):
            return 0
    if limits.max_in_flight is None:
        return UNBOUNDED
    return max(0, limits.max_in_flight - load.in_flight)


@dataclass(eq=False, slots=True)
class Ticket(Generic[W]):
    """One queued request. `waiter` is the caller's (the gateway's future)."""

    seq: int
    band: int
    flow: str
    cost: int
    deadline: float
    waiter: W
    outcome: Outcome = Outcome.QUEUED


@dataclass(slots=True)
class _Flow(Generic[W]):
    tickets: OrderedDict[int, Ticket[W]] = field(default_factory=OrderedDict)
    deficit: int = 0


@dataclass(slots=True)
class _Band(Generic[W]):
    limits: BandLimits
    flows: OrderedDict[str, _Flow[W]] = field(default_factory=OrderedDict)  # the DRR ring
    arrivals: OrderedDict[int, Ticket[W]] = field(default_factory=OrderedDict)


class FlowQueue(Generic[W]):
    """The queue of one model pool: bands of flows of tickets."""

    def __init__(self, bands: Sequence[BandLimits], *, quantum: int = 256, max_total: int = 0):
        if not bands or quantum < 1:
            raise ValueError("need at least one band and quantum >= 1")
        self._bands: list[_Band[W]] = [_Band(limits) for limits in bands]
        self._quantum = quantum
        self._max_cost = 16 * quantum  # one turn of the ring never loops more than 16 times
        self._max_total = max_total or sum(b.cap for b in bands)
        self._seq = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def depth(self, band: int) -> int:
        return len(self._bands[band].arrivals)

    def flows(self, band: int) -> int:
        return len(self._bands[band].flows)

    def push(
        self, band: int, flow: str, cost: int, now: float, waiter: W
    ) -> tuple[Ticket[W], Ticket[W] | None]:
        """Queue a request; returns its ticket and the one it displaced (shed), if any.
        Raises `BandFull` when it cannot be queued."""
        queue = self._bands[band]
        shed = None
        if len(queue.arrivals) >= queue.limits.cap:
            shed = _longest_flow_tail(queue, flow)
            if shed is None:
                raise BandFull
            self._remove(shed, Outcome.SHED)
        elif self._size >= self._max_total:
            shed = self._newest_below(band)
            if shed is None:
                raise BandFull
            self._remove(shed, Outcome.SHED)
        self._seq += 1
        cost = min(max(cost, 1), self._max_cost)
        ticket = Ticket(self._seq, band, flow, cost, now + queue.limits.ttl, waiter)
        queue.arrivals[ticket.seq] = ticket
        entry = queue.flows.get(flow)
        if entry is None:
            entry = queue.flows[flow] = _Flow()
        entry.tickets[ticket.seq] = ticket
        self._size += 1
        return ticket, shed

    def next_band(self) -> int:
        """The band `pop` takes from next (the queue must not be empty)."""
        return next(i for i, band in enumerate(self._bands) if band.flows)

    def pop(self) -> Ticket[W] | None:
        """The next ticket to admit: highest band first, then the DRR turn within it."""
        for band in self._bands:
            if band.flows:
                ticket = _next_in(band, self._quantum)
                self._forget(band, ticket)
                ticket.outcome = Outcome.ADMITTED
                return ticket
        return None

    def cancel(self, ticket: Ticket[W]) -> bool:
        """Take a ticket out (its client left); False when it was no longer queued."""
        if ticket.outcome is not Outcome.QUEUED:
            return False
        self._remove(ticket, Outcome.CANCELLED)
        return True

    def expire(self, now: float) -> Iterator[Ticket[W]]:
        """Remove and yield every ticket whose deadline has passed."""
        for band in self._bands:
            while band.arrivals:
                ticket = next(iter(band.arrivals.values()))
                if ticket.deadline > now:
                    break
                self._remove(ticket, Outcome.EXPIRED)
                yield ticket

    def drain(self) -> Iterator[Ticket[W]]:
        """Remove and yield everything queued (the pool lost its workers)."""
        for band in self._bands:
            while band.arrivals:
                ticket = next(iter(band.arrivals.values()))
                self._remove(ticket, Outcome.CANCELLED)
                yield ticket

    def _newest_below(self, band: int) -> Ticket[W] | None:
        for lower in reversed(self._bands[band + 1 :]):
            if lower.arrivals:
                return next(reversed(lower.arrivals.values()))
        return None

    def _remove(self, ticket: Ticket[W], outcome: Outcome) -> None:
        band = self._bands[ticket.band]
        entry = band.flows[ticket.flow]
        del entry.tickets[ticket.seq]
        if not entry.tickets:
            del band.flows[ticket.flow]
        self._forget(band, ticket)
        ticket.outcome = outcome

    def _forget(self, band: _Band[W], ticket: Ticket[W]) -> None:
        del band.arrivals[ticket.seq]
        self._size -= 1
        if not band.arrivals:  # a dict never shrinks: drop the table a backlog grew
            band.arrivals = OrderedDict()


def _longest_flow_tail(band: _Band[W], flow: str) -> Ticket[W] | None:
    """In a full band, the newest ticket of the flow holding the most, if that is more than
    `flow` holds: a flooding tenant cannot take the whole band's room from the others. A scan
    of the band's flows, on the refusal path only."""
    own = band.flows.get(flow)
    held = len(own.tickets) if own is not None else 0
    longest = max(band.flows.values(), key=lambda f: len(f.tickets))
    if len(longest.tickets) <= held + 1:
        return None
    return next(reversed(longest.tickets.values()))


def _next_in(band: _Band[W], quantum: int) -> Ticket[W]:
    """Deficit round-robin over the band's flows. The flow at the front of the ring sends its
    oldest ticket while its credit covers the cost; otherwise it earns a quantum and goes to
    the back. An emptied flow leaves the ring (and its credit goes with it)."""
    while True:
        name, flow = next(iter(band.flows.items()))
        seq, ticket = next(iter(flow.tickets.items()))
        if flow.deficit >= ticket.cost:
            flow.deficit -= ticket.cost
            del flow.tickets[seq]
            if not flow.tickets:
                del band.flows[name]
            return ticket
        flow.deficit += quantum
        band.flows.move_to_end(name)
