"""The in-process gateway serves with its start-up heap frozen (server/heap.py): a full
collection, whichever thread triggers it, does not walk the ~100,000 objects start-up built."""

from __future__ import annotations

import gc

from tests.api.conftest import Harness


async def test_the_gateway_serves_with_its_startup_heap_frozen(harness: Harness) -> None:
    assert (await harness.client.get("/healthz")).status_code == 200
    assert gc.get_freeze_count() > 10_000
