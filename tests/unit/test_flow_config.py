"""Flow control's per-model thresholds (server/services/flow_config.py)."""

from __future__ import annotations

from router.types import WorkerKind
from server.services.flow_config import model_flow
from server.settings import FlowSettings


def test_the_top_band_skips_the_engine_queue_gate_when_the_engine_orders_by_priority() -> None:
    flow = model_flow(FlowSettings(max_waiting=4), "m", WorkerKind.CHAT)
    high, standard, batch = flow.thresholds
    assert high.max_waiting is None  # it goes ahead of the engine's own queue
    assert standard.max_waiting == batch.max_waiting == 4
    assert high.max_in_flight is not None  # the in-flight limit still holds


def test_without_engine_priority_every_band_waits_for_the_engine_queue() -> None:
    flow = model_flow(FlowSettings(max_waiting=4, engine_priority=False), "m", WorkerKind.CHAT)
    assert [t.max_waiting for t in flow.thresholds] == [4, 4, 4]


def test_a_model_override_turns_engine_priority_off_for_that_model() -> None:
    settings = FlowSettings.model_validate(
        {"max_waiting": 4, "models": {"m": {"engine_priority": False}}}
    )
    assert model_flow(settings, "m", WorkerKind.CHAT).thresholds[0].max_waiting == 4
    assert model_flow(settings, "other", WorkerKind.CHAT).thresholds[0].max_waiting is None


def test_stream_intervals_per_band_with_a_models_override() -> None:
    settings = FlowSettings.model_validate(
        {"batch": {"stream_interval": 8}, "models": {"m": {"high": {"stream_interval": 2}}}}
    )
    assert model_flow(settings, "other", WorkerKind.CHAT).stream_intervals == (0, 0, 8)
    # An override replaces the band's settings: high gets 2, batch keeps the global 8.
    assert model_flow(settings, "m", WorkerKind.CHAT).stream_intervals == (2, 0, 8)
