"""Kubernetes discovery: workers from EndpointSlices, watched, Ready endpoints only.

The EndpointSlice controller copies a Service's labels onto its slices, so the gateway selects
slices by the label the chart puts on worker Services (`ragway.io/worker-kind: chat`). Each
Ready, non-terminating endpoint address becomes a worker; one that is not Ready (a vLLM pod
still loading its model) gets no traffic, which is production-stack #634's failure. New workers
start down and are probed at once, so they take traffic only after their own /health says so.

The watch is the lightkube AsyncClient's. On any failure the loop lists again from scratch
after `retry_interval`: a full list replaces the whole view, so nothing missed while the watch
was down lingers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.discovery_v1 import EndpointSlice

from router.pool import WorkerPool
from router.types import Backend, WorkerKind
from server.background import BackgroundTask
from server.settings import KubernetesSettings

log = logging.getLogger("ragway.discovery")


def slice_backends(slice_: Mapping[str, Any], kind_label: str, port_name: str) -> list[Backend]:
    """The workers one EndpointSlice (as a dict) describes: its Ready endpoints' addresses."""
    metadata = slice_.get("metadata") or {}
    labels = metadata.get("labels") or {}
    try:
        kind = WorkerKind(labels.get(kind_label, WorkerKind.CHAT.value))
    except ValueError:
        return []
    port = next(
        (p.get("port") for p in slice_.get("ports") or [] if p.get("name") == port_name), None
    )
    if port is None:
        return []
    service = labels.get("kubernetes.io/service-name", metadata.get("name", "?"))
    found = []
    for endpoint in slice_.get("endpoints") or []:
        conditions = endpoint.get("conditions") or {}
        # The API says a missing `ready` means ready; terminating endpoints drain.
        if conditions.get("ready") is False or conditions.get("terminating") is True:
            continue
        target = (endpoint.get("targetRef") or {}).get("name")
        for address in endpoint.get("addresses") or []:
            host = f"[{address}]" if ":" in address else address
            worker_id = f"{service}/{target or address}:{port}"
            found.append(Backend(worker_id, f"http://{host}:{port}", kind))
    return found


def backends_of(slices: Iterable[Mapping[str, Any]], settings: KubernetesSettings) -> list[Backend]:
    unique: dict[str, Backend] = {}
    for slice_ in slices:
        for backend in slice_backends(slice_, settings.kind_label, settings.port_name):
            unique.setdefault(backend.id, backend)
    return list(unique.values())


class KubernetesDiscovery:
    def __init__(
        self,
        settings: KubernetesSettings,
        pool: WorkerPool,
        static: Sequence[Backend],
        client: AsyncClient,
        on_added: Callable[[list[str]], Awaitable[None]],
        on_removed: Callable[[list[str]], None] | None = None,
    ):
        self._settings = settings
        self._pool = pool
        self._static = list(static)
        self._client = client
        self._on_added = on_added
        self._on_removed = on_removed
        self._slices: dict[str, dict[str, Any]] = {}
        self._background = BackgroundTask("ragway-discovery")

    def _labels(self) -> dict[str, Any]:
        # `None` as a value means "the label exists" in lightkube's selector syntax.
        return {**self._settings.label_selector, self._settings.kind_label: None}

    async def _apply(self) -> None:
        discovered = backends_of(self._slices.values(), self._settings)
        added, removed = self._pool.sync([*self._static, *discovered])
        if added or removed:
            log.info("workers added %s, removed %s", added, removed)
        if removed and self._on_removed is not None:
            self._on_removed(removed)
        if added:
            await self._on_added(added)

    async def list_and_watch(self) -> None:
        namespace = self._settings.namespace
        listing = self._client.list(EndpointSlice, namespace=namespace, labels=self._labels())
        self._slices = {}
        async for found in listing:
            if found.metadata is not None and found.metadata.name is not None:
                self._slices[found.metadata.name] = found.to_dict()
        await self._apply()
        watch = self._client.watch(
            EndpointSlice,
            namespace=namespace,
            labels=self._labels(),
            resource_version=listing.resourceVersion,
        )
        async for event, obj in watch:
            name = obj.metadata.name if obj.metadata else None
            if name is None:
                continue
            if event == "DELETED":
                self._slices.pop(name, None)
            else:
                self._slices[name] = obj.to_dict()
            await self._apply()

    async def _run(self) -> None:
        while True:
            try:
                await self.list_and_watch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the API server, RBAC, the network: try again later
                log.warning("EndpointSlice watch failed (%s); listing again", exc)
            await asyncio.sleep(self._settings.retry_interval)

    def start(self) -> None:
        self._background.start(self._run)

    async def aclose(self) -> None:
        await self._background.aclose()
        await self._client.close()
