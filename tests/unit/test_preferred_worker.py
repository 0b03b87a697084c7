"""A follow-up turn's preferred worker (the one holding the conversation's prefix cache): kept
while healthy and not overloaded, else the policy decides."""

from __future__ import annotations

from router.policies import preferred_worker
from router.types import RouteRequest
from tests.unit.test_router_policies import FixedLoad, backends


def test_no_preference_leaves_it_to_the_policy() -> None:
    assert preferred_worker(backends(3), RouteRequest("m"), FixedLoad(), 1.25) is None


def test_the_preferred_worker_is_kept_while_not_overloaded() -> None:
    request = RouteRequest("m", preferred="w2")
    # As busy as the others (a policy could pick any), and within 1.25x the average after this
    # request: the conversation stays where its prefix cache is.
    loads = FixedLoad({"w0": 3, "w1": 3, "w2": 3})
    chosen = preferred_worker(backends(3), request, loads, 1.25)
    assert chosen is not None
    assert chosen.id == "w2"


def test_an_idle_pool_keeps_the_preferred_worker() -> None:
    request = RouteRequest("m", preferred="w1")
    chosen = preferred_worker(backends(2), request, FixedLoad(), 1.25)
    assert chosen is not None
    assert chosen.id == "w1"


def test_an_overloaded_preferred_worker_is_passed_over() -> None:
    request = RouteRequest("m", preferred="w2")
    loads = FixedLoad({"w0": 0, "w1": 0, "w2": 4})
    assert preferred_worker(backends(3), request, loads, 1.25) is None


def test_a_preferred_worker_that_is_not_a_candidate_is_passed_over() -> None:
    # Down, ejected, excluded after a failure, or no longer serving the model.
    request = RouteRequest("m", preferred="w9")
    assert preferred_worker(backends(3), request, FixedLoad(), 1.25) is None


def test_a_single_candidate_is_kept_whatever_its_load() -> None:
    request = RouteRequest("m", preferred="w0")
    chosen = preferred_worker(backends(1), request, FixedLoad({"w0": 50}), 1.25)
    assert chosen is not None
    assert chosen.id == "w0"
