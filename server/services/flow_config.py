"""Flow control's settings for one model: the global `flow` settings under the model's
overrides (`flow.models.<served name>`), turned into what router/flow.py takes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from router.flow import BandLimits, FlowQueue, Thresholds
from router.types import WorkerKind
from server.settings import BandSettings, FlowModelSettings, FlowSettings

# vLLM's priority scheduling serves lower values first; standard is vLLM's default (0), so a
# standard request's body needs no `priority` at all.
ENGINE_PRIORITY = (-1, 0, 1)  # high, standard, batch


@dataclass(frozen=True, slots=True)
class ModelFlow:
    thresholds: tuple[Thresholds, ...]  # per band: high, standard, batch
    bands: tuple[BandLimits, ...]
    quantum: int
    max_queued: int
    engine_priority: bool
    # Per band: vLLM's `stream_interval` for its streams (0: none to add).
    stream_intervals: tuple[int, ...] = (0, 0, 0)

    def new_queue(self) -> FlowQueue[Any]:
        return FlowQueue(self.bands, quantum=self.quantum, max_total=self.max_queued)


def model_flow(settings: FlowSettings, model: str, kind: WorkerKind) -> ModelFlow:
    """An embedding model's `max_waiting` is its workers' batch queue, in inputs."""
    over = settings.models.get(model)

    def pick(name: str) -> Any:
        value = getattr(over, name, None) if over is not None else None
        return getattr(settings, name) if value is None else value

    bands = tuple(_band(settings, over, b) for b in ("high", "standard", "batch"))
    max_in_flight = int(pick("max_in_flight"))
    waiting = pick("max_waiting") if kind is WorkerKind.CHAT else settings.max_embedding_queue
    if kind is WorkerKind.EMBEDDING and over is not None and over.max_waiting is not None:
        waiting = over.max_waiting
    engine_priority = bool(pick("engine_priority"))
    thresholds = tuple(
        Thresholds(
            max_in_flight=max(1, int(max_in_flight * band.share)) if max_in_flight else None,
            # With the engine's priority scheduling, a top-band request goes ahead of the
            # engine's own queue: holding it back for that queue only adds a wait (measured on
            # vLLM CPU: interactive chats timing out in the gateway behind a batch flood).
            max_waiting=None if top and engine_priority else float(waiting) or None,
            max_kv_cache_usage=float(pick("max_kv_cache_usage")) or None,
        )
        for top, band in zip((True, False, False), bands, strict=True)
    )
    return ModelFlow(
        thresholds,
        tuple(BandLimits(b.cap, b.ttl) for b in bands),
        settings.quantum,
        settings.max_queued,
        engine_priority,
        tuple(b.stream_interval or 0 for b in bands),
    )


def _band(settings: FlowSettings, over: FlowModelSettings | None, name: str) -> BandSettings:
    """The global band with the fields a model's override sets (the rest keep the band's)."""
    band: BandSettings = getattr(settings, name)
    part: BandSettings | None = getattr(over, name, None) if over is not None else None
    if part is None:
        return band
    return band.model_copy(update={k: getattr(part, k) for k in part.model_fields_set})
