"""Flow control at the gateway: a request that finds every worker of its model saturated waits
here, in its priority band and its tenant's flow (router/flow.py decides the order), until a
worker has room, its band's TTL passes, or its client leaves.

The fast path, nothing queued for the model and a worker with room, is one synchronous call
that allocates nothing and takes no lock. A queued request awaits a future; the queue is
pumped whenever a request ends on a worker and whenever a scrape lands (LoadTracker's change
listener), so no task runs per request or per queue. Between admission and the moment the
request is counted on a worker (its dispatch starts, in the same step of the event loop as
the wake-up) the admission is counted as pending, so one freed slot admits one request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from router.errors import NoHealthyWorker, NoRoute, UnknownModel
from router.flow import UNBOUNDED, BandFull, FlowQueue, Outcome, Thresholds, Ticket, headroom
from router.load import LoadTracker
from router.pool import WorkerPool
from router.types import WorkerKind
from server.errors import (
    DROPPED_REASON_HEADER,
    RagwayError,
    RequestDropped,
    UpstreamUnavailable,
)
from server.observability.flow_metrics import FlowMetrics
from server.observability.series import Series
from server.services.flow_config import ModelFlow, model_flow
from server.settings import FlowSettings
from server.tenancy.principal import Principal, PriorityClass

BANDS = (PriorityClass.HIGH, PriorityClass.STANDARD, PriorityClass.BATCH)
BAND_INDEX = {band: i for i, band in enumerate(BANDS)}

Waiter = asyncio.Future[None]


class Go(Enum):
    HERE = "here"
    ELSEWHERE = "elsewhere"


@dataclass(slots=True)
class _Pool:
    """The queue of one model, and its admissions not yet counted on a worker."""

    kind: WorkerKind
    model: str
    config: ModelFlow
    queue: FlowQueue[Waiter]
    pending: int = 0


@dataclass(frozen=True, slots=True)
class Queued:
    """A request waiting in the gateway: what `FlowControl.wait` awaits."""

    pool: _Pool
    ticket: Ticket[Waiter]
    tenant: str
    queued_at: float


class FlowControl:
    def __init__(
        self,
        settings: FlowSettings,
        pool: WorkerPool,
        loads: LoadTracker,
        metrics: FlowMetrics,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.enabled = settings.enabled
        self._settings = settings
        self._workers = pool
        self._loads = loads
        self._metrics = metrics
        self._clock = clock
        self._configs: dict[str, ModelFlow] = {}
        self._pools: dict[str, _Pool] = {}
        self._series = Series()
        loads.listen(self.pump)

    def config(self, model: str, kind: WorkerKind = WorkerKind.CHAT) -> ModelFlow:
        found = self._configs.get(model)
        if found is None:  # one per served model: bounded by what the workers serve
            found = self._configs[model] = model_flow(self._settings, model, kind)
        return found

    def enter(
        self, kind: WorkerKind, model: str, principal: Principal, cost: int, worker: str
    ) -> Go | Queued:
        """Whether a request routed to `worker` may go: `Go.HERE`; `Go.ELSEWHERE` when that
        worker is saturated but another has room (route again, excluding `full()`); otherwise
        it is queued: await `wait(queued)`, then route again. Raises `RequestDropped` when its
        band is full."""
        band = BAND_INDEX[principal.priority]
        pool = self._pools.get(model)
        config = pool.config if pool is not None else self.config(model, kind)
        if pool is None or not pool.queue:
            limits = config.thresholds[band]
            if pool is None and headroom(self._loads.load(worker), limits):
                self._count(model, principal.name, principal.priority)
                return Go.HERE
            pending = 0 if pool is None else pool.pending
            if self._room(kind, model, limits, pending) > pending:
                self._count(model, principal.name, principal.priority)
                return Go.ELSEWHERE
        if pool is None:
            pool = self._pools[model] = _Pool(kind, model, config, config.new_queue())
        queued = self._queue(pool, band, principal, cost)
        # A higher band may have room where the queued ones do not (a band's `share`).
        self._admit(pool)
        return queued

    async def wait(self, queued: Queued) -> None:
        """Wait for admission. Raises `RequestDropped` (TTL, shed) or `UpstreamUnavailable`;
        a cancelled wait (the client left) takes the ticket out at once."""
        pool, ticket = queued.pool, queued.ticket
        try:
            async with asyncio.timeout_at(self._loop_deadline(ticket.deadline)):
                await ticket.waiter
        except TimeoutError:
            if pool.queue.cancel(ticket):
                self._refused(pool, ticket.band, "queue_timeout")
                self._depth(pool, ticket.band)
                self._tidy(pool)
                raise _dropped(pool, "queue_timeout") from None
            if ticket.outcome is not Outcome.ADMITTED:  # failed by the pump at the same moment
                _retrieve(ticket.waiter)
                raise _dropped(pool, "queue_timeout") from None
        except asyncio.CancelledError:
            _retrieve(ticket.waiter)  # a failure set just before the client left
            if ticket.outcome is Outcome.ADMITTED:
                self._admitted_gone(pool)
            elif pool.queue.cancel(ticket):
                self._depth(pool, ticket.band)
                self._tidy(pool)
            raise
        pool.pending -= 1
        band = BANDS[ticket.band]
        self._series(self._metrics.wait, pool.model, band).observe(self._clock() - queued.queued_at)
        self._count(pool.model, queued.tenant, band)
        self._tidy(pool)

    def full(self, kind: WorkerKind, model: str, principal: Principal) -> list[str]:
        """The model's saturated workers, to route around; none when all of them are."""
        limits = self.config(model, kind).thresholds[BAND_INDEX[principal.priority]]
        try:
            candidates = self._workers.candidates(kind, model)
        except NoRoute:  # routing answers 404 or 503
            return []
        full = [b.id for b in candidates if not headroom(self._loads.load(b.id), limits)]
        return full if len(full) < len(candidates) else []

    def pump(self) -> None:
        """Admit what the workers have room for, and drop what waited too long."""
        if not self._pools:
            return
        now = self._clock()
        for pool in list(self._pools.values()):
            for ticket in pool.queue.expire(now):
                self._fail(pool, ticket, _dropped(pool, "queue_timeout"), "queue_timeout")
            self._admit(pool)
            self._tidy(pool)

    def snapshot(self) -> dict[str, Any]:
        """Queue depths per model and band (counts only: no tenant names), for /readyz."""
        return {
            pool.model: {
                **{band.value: pool.queue.depth(i) for i, band in enumerate(BANDS)},
                "admitting": pool.pending,
            }
            for pool in self._pools.values()
        }

    def _queue(self, pool: _Pool, band: int, principal: Principal, cost: int) -> Queued:
        waiter: Waiter = asyncio.get_running_loop().create_future()
        now = self._clock()
        try:
            ticket, shed = pool.queue.push(band, principal.fairness_id, cost, now, waiter)
        except BandFull:
            self._refused(pool, band, "band_full")
            self._tidy(pool)
            raise _dropped(pool, "band_full") from None
        if shed is not None:
            self._fail(pool, shed, _dropped(pool, "shed"), "shed")
        self._depth(pool, band)
        return Queued(pool, ticket, principal.name, now)

    def _admit(self, pool: _Pool) -> None:
        queue = pool.queue
        while queue:
            band = queue.next_band()
            try:
                room = self._room(pool.kind, pool.model, pool.config.thresholds[band], pool.pending)
            except RagwayError:
                for failed in queue.drain():
                    self._fail(pool, failed, _no_worker(pool.model), "no_healthy_worker")
                return
            if room <= pool.pending:
                return
            ticket = queue.pop()
            assert ticket is not None
            self._depth(pool, band)
            if ticket.waiter.done():  # cancelled, its task not yet resumed
                ticket.outcome = Outcome.CANCELLED
                continue
            pool.pending += 1
            ticket.waiter.set_result(None)

    def _room(self, kind: WorkerKind, model: str, limits: Thresholds, need: int) -> int:
        """Free slots over the model's workers, counted until they exceed `need`. A model
        without workers is let through, for routing to answer 404 or 503, unless requests
        already wait for it (`need` > 0 comes from the pump): those get 503."""
        try:
            candidates = self._workers.candidates(kind, model)
        except (UnknownModel, NoHealthyWorker):
            if not self._pools.get(model):
                return UNBOUNDED
            raise _no_worker(model) from None
        total = 0
        for backend in candidates:
            total += headroom(self._loads.load(backend.id), limits)
            if total > need:
                break
        return total

    def _count(self, model: str, tenant: str, band: str) -> None:
        self._series(self._metrics.admitted, model, band, tenant).inc()

    def _admitted_gone(self, pool: _Pool) -> None:
        """An admitted request's client left before it reached a worker: its slot is free."""
        pool.pending -= 1
        self._tidy(pool)
        self.pump()

    def _fail(self, pool: _Pool, ticket: Ticket[Waiter], exc: RagwayError, reason: str) -> None:
        self._refused(pool, ticket.band, reason)
        self._depth(pool, ticket.band)
        if not ticket.waiter.done():
            ticket.waiter.set_exception(exc)

    def _refused(self, pool: _Pool, band: int, reason: str) -> None:
        self._series(self._metrics.rejected, pool.model, BANDS[band], reason).inc()

    def _depth(self, pool: _Pool, band: int) -> None:
        depth = self._series(self._metrics.queue_depth, pool.model, BANDS[band])
        depth.set(pool.queue.depth(band))

    def _tidy(self, pool: _Pool) -> None:
        if not pool.queue and not pool.pending and self._pools.get(pool.model) is pool:
            del self._pools[pool.model]

    def _loop_deadline(self, deadline: float) -> float:
        loop = asyncio.get_running_loop()
        return loop.time() + max(0.0, deadline - self._clock())


def _retrieve(waiter: Waiter) -> None:
    """Mark a failure nobody will raise as seen, so asyncio does not log it at collection."""
    if waiter.done() and not waiter.cancelled():
        waiter.exception()


def _dropped(pool: _Pool, reason: str) -> RequestDropped:
    messages = {
        "band_full": "its priority band's queue is full",
        "queue_timeout": "it waited queued longer than its priority band allows",
        "shed": "a request of a higher band, or of a tenant with less queued, took its place",
    }
    return RequestDropped(
        f"The workers serving `{pool.model}` are saturated and the request was dropped: "
        f"{messages[reason]}. Retry later.",
        reason,
    )


def _no_worker(model: str) -> UpstreamUnavailable:
    exc = UpstreamUnavailable(f"No healthy worker is serving `{model}` right now; try again.")
    exc.headers = {DROPPED_REASON_HEADER: "no_healthy_worker"}
    return exc
