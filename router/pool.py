"""The worker pool: which workers exist, what each one serves, and which are healthy."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from router.errors import NoHealthyWorker, UnknownModel
from router.health import Health
from router.types import Backend, WorkerKind

ModelCard = Mapping[str, Any]


@dataclass(slots=True)
class WorkerState:
    backend: Backend
    health: Health = field(default_factory=Health)
    # The worker's own /v1/models entries, as last seen; kept while it is down so that its
    # models are still known (a request for them is then a 503, not a 404).
    cards: tuple[ModelCard, ...] = ()
    # The cards' ids, worked out when the cards change (`learn`): routing asks on every request.
    served: tuple[str, ...] = ()

    @property
    def models(self) -> tuple[str, ...]:
        return self.served or self.backend.declared_models

    def learn(self, cards: Sequence[ModelCard]) -> None:
        self.cards = tuple(cards)
        self.served = tuple(str(card["id"]) for card in self.cards)

    @property
    def models_known(self) -> bool:
        return bool(self.cards or self.backend.declared_models)


class WorkerPool:
    def __init__(
        self,
        backends: Iterable[Backend],
        *,
        eject_base: float = 1.0,
        eject_max: float = 30.0,
        unhealthy_threshold: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._workers = {backend.id: WorkerState(backend) for backend in backends}
        self._eject_base = eject_base
        self._eject_max = eject_max
        self._unhealthy_threshold = unhealthy_threshold
        self._clock = clock

    @property
    def workers(self) -> Sequence[WorkerState]:
        return tuple(self._workers.values())

    def kinds(self) -> set[WorkerKind]:
        return {state.backend.kind for state in self._workers.values()}

    def sync(self, backends: Iterable[Backend]) -> tuple[list[str], list[str]]:
        """Make the pool hold exactly `backends` (a discovery source's latest view). Workers
        that stay keep their health and models; returns (added ids, removed ids)."""
        wanted = {b.id: b for b in backends}
        removed = [i for i in self._workers if i not in wanted]
        added = [i for i in wanted if i not in self._workers]
        for worker_id in removed:
            del self._workers[worker_id]
        for worker_id in added:
            self._workers[worker_id] = WorkerState(wanted[worker_id])
        return added, removed

    def record_probe(
        self,
        worker_id: str,
        *,
        up: bool,
        reason: str,
        cards: Sequence[ModelCard] | None = None,
        definite: bool = True,
    ) -> bool:
        """Store one probe's result; returns True when the worker's up/down state flipped.
        A failure that is not `definite` (a timeout) counts toward the unhealthy threshold."""
        state = self._workers.get(worker_id)
        if state is None:  # removed while the probe was in flight
            return False
        if cards is not None:
            state.learn(cards)
        return state.health.set(up, reason, definite=definite, threshold=self._unhealthy_threshold)

    def eject(self, worker_id: str, reason: str, now: float | None = None) -> float:
        """Passive ejection after a failed request; returns for how many seconds."""
        state = self._workers.get(worker_id)
        if state is None:
            return 0.0
        now = self._clock() if now is None else now
        return state.health.eject(reason, now, self._eject_base, self._eject_max)

    def succeeded(self, worker_id: str) -> None:
        state = self._workers.get(worker_id)
        if state is not None:
            state.health.succeeded()

    def has(self, worker_id: str) -> bool:
        return worker_id in self._workers

    def is_up(self, worker_id: str) -> bool:
        state = self._workers.get(worker_id)
        return state is not None and state.health.up

    def candidates(
        self,
        kind: WorkerKind,
        model: str,
        *,
        now: float | None = None,
        exclude: Collection[str] = (),
    ) -> list[Backend]:
        """Routable workers of `kind` that serve `model`, minus `exclude`.

        Raises UnknownModel when no worker of that kind serves it (as far as anyone can know),
        and NoHealthyWorker when some do but none can take the request. If every probed-up
        worker is ejected, they are used anyway: passive ejection must never turn a partial
        failure into a total outage (Envoy's "panic" rule).
        """
        now = self._clock() if now is None else now
        routable: list[Backend] = []
        up: list[Backend] = []
        serving = False
        unknown_down = False
        for state in self._workers.values():
            if state.backend.kind is not kind:
                continue
            if model in state.models:
                serving = True
                if state.health.up and state.backend.id not in exclude:
                    up.append(state.backend)
                    if state.health.routable(now):
                        routable.append(state.backend)
            elif not state.models_known:
                unknown_down = True
        if routable or up:
            return routable or up
        if serving or unknown_down:
            raise NoHealthyWorker(model)
        raise UnknownModel(model)

    def serves(self, model: str) -> bool:
        return any(model in state.models for state in self._workers.values())

    def cards(self, *, healthy_only: bool = True) -> list[ModelCard]:
        """The union of the workers' model entries, first worker wins for a repeated id."""
        seen: dict[str, ModelCard] = {}
        for state in self._workers.values():
            if healthy_only and not state.health.up:
                continue
            for card in state.cards or ({"id": m} for m in state.backend.declared_models):
                seen.setdefault(str(card["id"]), card)
        return list(seen.values())

    def ready(self) -> dict[WorkerKind, bool]:
        """For each configured kind: is at least one worker of it up?"""
        status = dict.fromkeys(self.kinds(), False)
        for state in self._workers.values():
            status[state.backend.kind] |= state.health.up
        return status

    def snapshot(self) -> list[Mapping[str, Any]]:
        return [
            {
                "id": s.backend.id,
                "url": s.backend.url,
                "kind": s.backend.kind.value,
                "up": s.health.up,
                "ejected": not s.health.routable(self._clock()) and s.health.up,
                "reason": s.health.reason,
                "since": s.health.since,
                "models": list(s.models),
            }
            for s in self._workers.values()
        ]
