"""AgentMetrics: a private registry, pushed counters and figures read at scrape time."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.metrics import AgentMetrics
from agent.sensors.status import SensorState, SensorStatus
from agent.store.base import StoreStats


def samples(metrics: AgentMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def status(name: str, state: SensorState = SensorState.OK) -> SensorStatus:
    return SensorStatus(
        name=name,
        driver="synthetic",
        state=state,
        accepted=10,
        rejected={"nan": 2, "stale": 1},
        errors=3,
        consecutive_errors=0,
        last_error=None,
        last_reading_ts=None,
        rate_hz=1.0,
    )


def test_predictions_latency_and_errors() -> None:
    m = AgentMetrics(process=False)
    m.observe_prediction("predict", "ok", 0.0002)
    m.observe_prediction("predict", "ok", 0.0004)
    m.observe_prediction("predict", "invalid", None)
    m.record_error("inference")
    m.record_model_event("model_swapped", {"version": "2"})
    got = samples(m)
    assert got[("orchard_predictions_total", (("endpoint", "predict"), ("outcome", "ok")))] == 2
    assert (
        got[("orchard_predictions_total", (("endpoint", "predict"), ("outcome", "invalid")))] == 1
    )
    assert got[("orchard_inference_seconds_count", ())] == 2
    assert got[("orchard_inference_seconds_bucket", (("le", "0.00025"),))] == 1
    assert got[("orchard_errors_total", (("kind", "inference"),))] == 1
    assert got[("orchard_model_events_total", (("event", "model_swapped"),))] == 1
    stats = m.inference_stats()
    assert stats.count == 2 and stats.errors == 1
    assert stats.p50_ms == pytest.approx(0.3)


def test_registries_are_private() -> None:
    a, b = AgentMetrics(), AgentMetrics()
    a.observe_prediction("predict", "ok", 0.001)
    assert ("orchard_inference_seconds_count", ()) not in {k for k, v in samples(b).items() if v}
    assert b"process_resident_memory_bytes" in a.render()


def test_sensors_store_and_model_are_read_at_scrape_time() -> None:
    m = AgentMetrics(process=False)
    m.update_sensors({"room": status("room")})
    got = samples(m)
    assert got[("orchard_sensor_readings_accepted_total", (("sensor", "room"),))] == 10
    key = ("orchard_sensor_readings_rejected_total", (("reason", "nan"), ("sensor", "room")))
    assert got[key] == 2
    assert got[("orchard_sensor_up", (("sensor", "room"), ("state", "ok")))] == 1

    live = {"lab": status("lab", SensorState.DISABLED)}
    m.bind(sensors=lambda: live, store=lambda: StoreStats(5, 4096, None, None, path=Path("x")))
    got = samples(m)
    assert ("orchard_sensor_readings_accepted_total", (("sensor", "room"),)) not in got
    assert got[("orchard_sensor_up", (("sensor", "lab"), ("state", "disabled")))] == 0
    assert got[("orchard_store_rows", ())] == 5
    assert got[("orchard_store_bytes", ())] == 4096
    assert ("orchard_model_loaded", ()) not in got  # no model source bound


def test_sources_can_be_given_at_construction() -> None:
    m = AgentMetrics(
        sensors=lambda: {"room": status("room")},
        store=lambda: StoreStats(7, 1, None, None),
        process=False,
    )
    got = samples(m)
    assert got[("orchard_store_rows", ())] == 7
    assert got[("orchard_sensor_errors_total", (("sensor", "room"),))] == 3
    assert m.has_store_source and not m.has_model_source


def test_a_failing_source_does_not_break_the_scrape(caplog: pytest.LogCaptureFixture) -> None:
    m = AgentMetrics(process=False)

    def broken() -> StoreStats:
        raise OSError("disk gone")

    m.bind(store=broken, model=lambda: None)
    got = samples(m)
    assert got[("orchard_model_loaded", ())] == 0
    assert ("orchard_store_rows", ()) not in got
    assert "metrics source" in caplog.text
