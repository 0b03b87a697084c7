"""Model names and worker choice: aliases, the model list, and routing a model to a worker."""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from router.errors import NoHealthyWorker, UnknownModel
from router.policies import preferred_worker
from router.pool import WorkerPool
from router.types import Backend, RouteRequest, WorkerKind
from server.errors import DROPPED_REASON_HEADER, ModelNotFound, UpstreamUnavailable
from server.observability.metrics import UNKNOWN
from server.services.routing import PolicyBook
from server.settings import RagwaySettings


@dataclass(frozen=True, slots=True)
class Route:
    """Where one request goes."""

    backend: Backend
    served_model: str
    headers: Mapping[str, str]


def backends_from(settings: RagwaySettings) -> list[Backend]:
    return [
        Backend(id=w.display_name, url=w.base_url, kind=w.kind, declared_models=w.models)
        for w in settings.workers
    ]


class Catalog:
    def __init__(
        self,
        settings: RagwaySettings,
        pool: WorkerPool,
        policies: PolicyBook,
    ):
        self._aliases = dict(settings.aliases)
        # RAG virtual models: name -> the base model they answer with.
        self._virtual = {n: vm.model for n, vm in settings.rag.virtual_models.items()}
        self._pool = pool
        self._policies = policies
        self._created = int(time.time())
        self._worker_headers: dict[str, dict[str, str]] = {
            w.display_name: (
                {"authorization": f"Bearer {w.api_key.get_secret_value()}"} if w.api_key else {}
            )
            for w in settings.workers
        }

    def served_name(self, model: str) -> str:
        return self._aliases.get(model, model)

    def label(self, model: str) -> str:
        """A bounded metrics label: the name asked for if ragway knows it, else `unknown`."""
        if model in self._aliases or model in self._virtual or self._pool.serves(model):
            return model
        return UNKNOWN

    def route(
        self,
        kind: WorkerKind,
        model: str,
        request_id: str,
        *,
        session_key: str | None = None,
        prefix: tuple[int, ...] = (),
        exclude: Collection[str] = (),
        preferred: str | None = None,
    ) -> Route:
        """Choose a worker for `model` (an alias or a served name), skipping `exclude`; the
        `preferred` worker while it is healthy and not overloaded."""
        served = self.served_name(model)
        try:
            candidates = self._pool.candidates(kind, served, exclude=exclude)
        except UnknownModel as exc:
            raise ModelNotFound(model) from exc
        except NoHealthyWorker as exc:
            unavailable = UpstreamUnavailable(
                f"No healthy worker is serving `{model}` right now; try again shortly."
            )
            unavailable.headers = {DROPPED_REASON_HEADER: "no_healthy_worker"}
            raise unavailable from exc
        request = RouteRequest(served, session_key, prefix, preferred)
        loads, policy = self._policies.loads, self._policies.for_model(kind, served)
        backend = preferred_worker(
            candidates, request, loads, self._policies.preferred_load_factor
        ) or policy.choose(candidates, request, loads)
        headers = {
            "content-type": "application/json",
            "x-request-id": request_id,
            **self._worker_headers.get(backend.id, {}),
        }
        return Route(backend, served, headers)

    def list_models(self) -> dict[str, Any]:
        """OpenAI's model list: what healthy workers serve, as they describe it, plus aliases
        and RAG virtual models."""
        return {"object": "list", "data": list(self._cards().values())}

    def model_card(self, model_id: str) -> dict[str, Any]:
        """One entry of the model list, as `GET /v1/models/{id}` returns it."""
        card = self._cards().get(model_id)
        if card is None:
            raise ModelNotFound(model_id)
        return card

    def _cards(self) -> dict[str, dict[str, Any]]:
        cards = {str(card["id"]): dict(card) for card in self._pool.cards()}
        named = {**self._aliases, **{n: self.served_name(m) for n, m in self._virtual.items()}}
        for alias, target in named.items():
            if target in cards and alias not in cards:
                cards[alias] = {
                    "id": alias,
                    "object": "model",
                    "created": self._created,
                    "owned_by": "ragway",
                    "root": target,
                    "parent": target,
                }
        for card in cards.values():
            card.setdefault("object", "model")
            card.setdefault("created", self._created)
            card.setdefault("owned_by", "ragway")
        return cards
