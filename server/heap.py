"""The gateway's start-up heap, frozen out of the cyclic garbage collector while it serves.

After start-up the process holds about 100,000 long-lived container objects (FastAPI's and
pydantic's models, chromadb, tiktoken, the routes, the settings). CPython's full (oldest
generation) collection walks all of them, whichever thread triggers it, with the GIL held: about
0.1 s on a 2-core machine, during which the event loop answers nothing. One came at random, for
instance in the thread that splits a 4.5 MB multipart upload, and held `/healthz` for 90-125 ms
(issue 10's attack suite; benchmarks/README.md). Frozen (`gc.freeze()`), those objects are
skipped by every collection, so a full collection walks only what was created since start-up.
Reference counting still frees them as before; only cycles among them wait for the unfreeze at
shutdown.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# The youngest generation is collected every 700 net allocations by default: several times a
# request in the gateway, and each pass moves the objects of requests still in flight on to an
# older generation, where they bring on the full collections above. In a process that served
# chats in a loop (in-process, auth on, 10,000 requests, 2026-11-30), the collector took about
# 1.2 s of CPU with the defaults and 0.2 s with the heap frozen and this threshold.
YOUNG_THRESHOLD = 10_000


@contextmanager
def frozen_startup_heap() -> Iterator[None]:
    """Freeze what start-up left (it is all long-lived), and collect the youngest generation
    every YOUNG_THRESHOLD allocations; on the way out, unfreeze (so the objects of a gateway
    that stopped, in tests many per process, are collectable again) and restore the threshold.

    Only the young generations are collected first: a full collection here found no garbage in
    the gateway (start-up's own collections already ran) but costs 0.1-0.3 s, once per process
    and once per in-process gateway of the test suite (+7 s over 41 tests/api tests)."""
    gc.collect(1)
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], YOUNG_THRESHOLD), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
