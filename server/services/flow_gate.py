"""What chat, completions, Responses and embeddings call for flow control: admission right
before dispatch, and vLLM's `priority` (and a stream's `stream_interval`) for the caller's
band. The queueing itself is server/services/flow.py; the order is router/flow.py."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from router.types import WorkerKind
from server.services.catalog import Route
from server.services.flow import BAND_INDEX, FlowControl, Go, Queued
from server.services.flow_config import ENGINE_PRIORITY
from server.tenancy.principal import Principal, PriorityClass
from server.tenancy.scopes import with_field


def admit(flow: FlowControl, kind: WorkerKind, route: Route, principal: Principal, cost: int
          ) -> Go | Queued:  # fmt: skip
    """The synchronous first step, cheap when nothing is queued: `Go.HERE` keeps `route`;
    anything else goes through `routed_after`."""
    return flow.enter(kind, route.served_model, principal, cost, route.backend.id)


async def routed_after(
    flow: FlowControl,
    admission: Go | Queued,
    kind: WorkerKind,
    route: Route,
    principal: Principal,
    reroute: Callable[[Sequence[str]], Route],
) -> Route:
    """Another worker's route when that one has room; otherwise wait in the queue, then route
    again around the saturated workers. Nothing may await between this and the dispatch that
    counts the request on its worker."""
    if isinstance(admission, Queued):
        await flow.wait(admission)
    return reroute(flow.full(kind, route.served_model, principal))


def engine_priority(
    flow: FlowControl | None, principal: Principal, served: str, data: dict[str, Any]
) -> int:
    """vLLM's `priority` for the caller's band, where the model's workers run priority
    scheduling; 0 (the engine's default: nothing to add) for standard, or when the client set
    its own (allowed only to keys that may: see tenancy's guarded fields)."""
    if flow is None or principal.priority is PriorityClass.STANDARD:
        return 0
    if "priority" in data or not flow.config(served).engine_priority:
        return 0
    return ENGINE_PRIORITY[BAND_INDEX[principal.priority]]


def stream_interval(
    flow: FlowControl | None, principal: Principal, served: str, data: dict[str, Any]
) -> int:
    """vLLM's `stream_interval` for a streamed chat or completion of the caller's band while
    flow control is on (0: none to add, as when the client set its own): coalescing a batch
    stream's tokens into fewer chunks saves vLLM's API server, ragway and the client work per
    token on the CPU the engine shares (benchmarks/README.md, "Coalesced batch streams")."""
    if flow is None or not flow.enabled or "stream_interval" in data:
        return 0
    return flow.config(served).stream_intervals[BAND_INDEX[principal.priority]]


def with_engine_fields(body: bytes, priority: int, interval: int) -> bytes | None:
    """The raw body with `priority` and `stream_interval` (each when not 0) added in one copy;
    None where `with_field` cannot add them."""
    if not interval:
        return with_field(body, b"priority", b"%d" % priority)
    if not priority:
        return with_field(body, b"stream_interval", b"%d" % interval)
    return with_field(body, b"stream_interval", b'%d,"priority":%d' % (interval, priority))


def estimated_tokens(raw: bytes, data: dict[str, Any]) -> int:
    """A request's cost for fair sharing: prompt bytes / 4 plus the tokens it may generate."""
    value = data.get("max_tokens") or data.get("max_completion_tokens")
    return len(raw) // 4 + (value if isinstance(value, int) else 0)
