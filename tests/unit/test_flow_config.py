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
    assert model_flow(settings, "m", WorkerKind.CHAT).stream_intervals == (2, 0, 8)


def test_a_band_given_in_part_keeps_that_bands_defaults() -> None:
    """`flow.batch.share` alone (or a model's `batch.share`) keeps the batch band's cap and
    stream_interval, not BandSettings' generic defaults; an explicit null turns one off."""
    default = FlowSettings().batch
    settings = FlowSettings.model_validate(
        {"batch": {"share": 0.5}, "models": {"m": {"batch": {"share": 0.75}},
                                              "n": {"batch": {"stream_interval": None}}}}
    )  # fmt: skip
    assert settings.batch.share == 0.5
    assert settings.batch.cap == default.cap
    assert settings.batch.stream_interval == default.stream_interval
    m = model_flow(settings, "m", WorkerKind.CHAT)
    assert m.stream_intervals[2] == default.stream_interval
    assert m.bands[2].cap == default.cap
    assert m.thresholds[2].max_in_flight == int(settings.max_in_flight * 0.75)
    assert model_flow(settings, "n", WorkerKind.CHAT).stream_intervals[2] == 0
