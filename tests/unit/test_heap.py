"""The gateway's start-up heap is frozen out of the cyclic collector while it serves
(server/heap.py), and collectable again after."""

from __future__ import annotations

import gc
import weakref

import pytest

from server.heap import YOUNG_THRESHOLD, frozen_startup_heap


class _Node:
    me: _Node


def test_a_full_collection_skips_the_frozen_heap_until_it_is_unfrozen() -> None:
    node = _Node()
    node.me = node  # a cycle: only the cyclic collector can free it
    ref = weakref.ref(node)
    before = gc.get_threshold()
    with frozen_startup_heap():
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] >= YOUNG_THRESHOLD
        assert not any(o is node for o in gc.get_objects())  # no collection walks it
        del node
        gc.collect()
        assert ref() is not None, "a frozen object was collected"
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
    gc.collect()
    assert ref() is None, "the unfrozen cycle was not collected"


def test_unfrozen_on_error_too() -> None:
    with pytest.raises(RuntimeError), frozen_startup_heap():
        raise RuntimeError("the gateway failed while serving")
    assert gc.get_freeze_count() == 0
