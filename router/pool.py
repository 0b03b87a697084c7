"""The worker pool: which workers exist, what each one serves, and which are healthy."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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

    @property
    def models(self) -> tuple[str, ...]:
        if self.cards:
            return tuple(str(card["id"]) for card in self.cards)
        return self.backend.declared_models

    @property
    def models_known(self) -> bool:
        return bool(self.cards or self.backend.declared_models)


class WorkerPool:
    def __init__(self, backends: Iterable[Backend]):
        self._workers = {backend.id: WorkerState(backend) for backend in backends}

    @property
    def workers(self) -> Sequence[WorkerState]:
        return tuple(self._workers.values())

    def kinds(self) -> set[WorkerKind]:
        return {state.backend.kind for state in self._workers.values()}

    def record_probe(
        self, worker_id: str, *, up: bool, reason: str, cards: Sequence[ModelCard] | None = None
    ) -> bool:
        """Store one probe's result; returns True when the worker's up/down state flipped."""
        state = self._workers[worker_id]
        if cards is not None:
            state.cards = tuple(cards)
        return state.health.set(up, reason)

    def candidates(self, kind: WorkerKind, model: str) -> list[Backend]:
        """Healthy workers of `kind` that serve `model`.

        Raises UnknownModel when no worker of that kind serves it (as far as anyone can know),
        and NoHealthyWorker when some do but all of them are down.
        """
        healthy: list[Backend] = []
        serving = False
        unknown_down = False
        for state in self._workers.values():
            if state.backend.kind is not kind:
                continue
            if model in state.models:
                serving = True
                if state.health.up:
                    healthy.append(state.backend)
            elif not state.models_known:
                unknown_down = True
        if healthy:
            return healthy
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
                "reason": s.health.reason,
                "since": s.health.since,
                "models": list(s.models),
            }
            for s in self._workers.values()
        ]
