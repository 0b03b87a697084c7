"""Kubernetes discovery against a fake API server: EndpointSlices listed and watched, only
Ready endpoints used, and /v1/models following workers as they come and go."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import httpx2
import pytest
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig

from router.types import WorkerKind
from server.app import create_app
from server.discovery import slice_backends
from server.services.embeddings import TokenDecoder
from server.settings import KubernetesSettings
from tests.api.conftest import settings_for_fakes
from tests.fakes.worker import FakeWorker, HostRouter
from tests.serving import served

NAMESPACE = "ragway"


def endpoint_slice(name: str, ready: dict[str, bool | None], kind: str = "chat") -> dict[str, Any]:
    """A recorded-shape discovery.k8s.io/v1 EndpointSlice."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {
                "kubernetes.io/service-name": "prod-vllm-a",
                "app.kubernetes.io/instance": "prod",
                "ragway.io/worker-kind": kind,
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": [address],
                "conditions": {} if state is None else {"ready": state},
                "targetRef": {"kind": "Pod", "name": f"pod-{address.rsplit('.', 1)[1]}"},
            }
            for address, state in ready.items()
        ],
    }


def fake_kubeconfig() -> KubeConfig:
    return KubeConfig.from_dict(
        {
            "clusters": [{"name": "fake", "cluster": {"server": "http://kube.test"}}],
            "users": [{"name": "gateway", "user": {"token": "not-a-secret"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "gateway"}}],
            "current-context": "fake",
        }
    )


class _Events(httpx2.AsyncByteStream):
    def __init__(self, queue: asyncio.Queue[bytes]):
        self._queue = queue

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            yield await self._queue.get()


class FakeKubeAPI(httpx2.AsyncBaseTransport):
    def __init__(self, *slices: dict[str, Any]):
        self.slices = {s["metadata"]["name"]: s for s in slices}
        self.events: asyncio.Queue[bytes] = asyncio.Queue()
        self.selectors: list[str] = []

    def push(self, kind: str, obj: dict[str, Any]) -> None:
        self.events.put_nowait(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        assert (
            request.url.path == f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"
        )
        self.selectors.append(request.url.params.get("labelSelector", ""))
        if request.url.params.get("watch") in ("true", "1"):
            return httpx2.Response(200, stream=_Events(self.events))
        listing = {
            "apiVersion": "v1",
            "kind": "EndpointSliceList",
            "metadata": {"resourceVersion": "7"},
            "items": list(self.slices.values()),
        }
        return httpx2.Response(200, json=listing)


def test_only_ready_endpoints_become_workers() -> None:
    recorded = endpoint_slice("a", {"127.0.0.11": True, "127.0.0.12": False, "127.0.0.13": None})
    recorded["endpoints"].append({"addresses": ["127.0.0.14"],
                                  "conditions": {"ready": True, "terminating": True}})  # fmt: skip
    backends = slice_backends(recorded, "ragway.io/worker-kind", "http")
    assert [b.url for b in backends] == ["http://127.0.0.11:8000", "http://127.0.0.13:8000"]
    assert backends[0].id == "prod-vllm-a/pod-11:8000"
    assert all(b.kind is WorkerKind.CHAT for b in backends)
    assert (
        slice_backends(
            endpoint_slice("b", {"127.0.0.1": True}, kind="gpu"), "ragway.io/worker-kind", "http"
        )
        == []
    )
    assert slice_backends(recorded, "ragway.io/worker-kind", "grpc") == []


@pytest.fixture
async def discovered(
    token_decoder: TokenDecoder,
) -> AsyncIterator[tuple[httpx.AsyncClient, FakeKubeAPI]]:
    api = FakeKubeAPI(endpoint_slice("prod-vllm-a-1", {"127.0.0.11": True, "127.0.0.12": False}))
    transport = HostRouter()
    transport.add("embed.test", FakeWorker(models=["tiny-embed"], kind="embedding"))
    for host in ("127.0.0.11", "127.0.0.12"):
        transport.add(host, FakeWorker(models=["tiny-chat"]))
    settings = settings_for_fakes(
        workers=[{"url": "http://embed.test", "kind": "embedding", "name": "embed-0"}],
        discovery={
            "mode": "kubernetes",
            "kubernetes": KubernetesSettings(
                namespace=NAMESPACE,
                label_selector={"app.kubernetes.io/instance": "prod"},
                retry_interval=0.05,
            ).model_dump(),
        },
    )
    kube = AsyncClient(fake_kubeconfig(), namespace=NAMESPACE, transport=api)
    app = create_app(settings, upstream_transport=transport, token_decoder=token_decoder,
                     kube_client=kube)  # fmt: skip
    async with served(app, "http://r") as c:
        yield c, api


async def _workers(client: httpx.AsyncClient, want: set[str]) -> dict[str, Any]:
    for _ in range(200):
        ready: dict[str, Any] = (await client.get("/readyz")).json()
        up = {w["id"] for w in ready["workers"] if w["up"]}
        if up == want:
            return ready
        await asyncio.sleep(0.01)
    raise AssertionError(f"workers never became {want}: {ready['workers']}")


async def test_workers_follow_the_endpoint_slices(
    discovered: tuple[httpx.AsyncClient, FakeKubeAPI],
) -> None:
    client, api = discovered
    await _workers(client, {"embed-0", "prod-vllm-a/pod-11:8000"})
    assert all("ragway.io/worker-kind" in s and "app.kubernetes.io/instance=prod" in s
               for s in api.selectors)  # fmt: skip
    models = {m["id"] for m in (await client.get("/v1/models")).json()["data"]}
    assert "tiny-chat" in models

    api.push("MODIFIED", endpoint_slice("prod-vllm-a-1", {"127.0.0.11": True, "127.0.0.12": True}))
    await _workers(client, {"embed-0", "prod-vllm-a/pod-11:8000", "prod-vllm-a/pod-12:8000"})
    chat = {"model": "tiny-chat", "messages": [{"role": "user", "content": "x"}]}
    assert (await client.post("/v1/chat/completions", json=chat)).status_code == 200

    api.push("DELETED", endpoint_slice("prod-vllm-a-1", {}))
    await _workers(client, {"embed-0"})
    models = {m["id"] for m in (await client.get("/v1/models")).json()["data"]}
    assert "tiny-chat" not in models
    assert (await client.post("/v1/chat/completions", json=chat)).status_code == 404


async def test_a_removed_worker_leaves_no_series_and_no_prefix_entries(
    discovered: tuple[httpx.AsyncClient, FakeKubeAPI],
) -> None:
    client, api = discovered
    api.push("MODIFIED", endpoint_slice("prod-vllm-a-1", {"127.0.0.11": True, "127.0.0.12": True}))
    await _workers(client, {"embed-0", "prod-vllm-a/pod-11:8000", "prod-vllm-a/pod-12:8000"})
    long_prompt = "You are a helpful assistant for routers. " * 60  # many prefix blocks
    for _ in range(4):
        chat = {"model": "tiny-chat", "messages": [{"role": "user", "content": long_prompt}]}
        assert (await client.post("/v1/chat/completions", json=chat)).status_code == 200
    before = (await client.get("/metrics")).text
    assert 'worker="prod-vllm-a/pod-11:8000"' in before
    assert _gauge(before, "ragway_prefix_index_entries") > 0

    api.push("DELETED", endpoint_slice("prod-vllm-a-1", {}))
    await _workers(client, {"embed-0"})
    await asyncio.sleep(0.2)  # a probe or scrape in flight during the delete has ended by now
    after = (await client.get("/metrics")).text
    assert "pod-11" not in after
    assert "pod-12" not in after
    assert 'worker="embed-0"' in after  # the worker that stays keeps its series
    assert _gauge(after, "ragway_prefix_index_entries") == 0


def _gauge(text: str, name: str) -> float:
    (line,) = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(line.split()[1])
