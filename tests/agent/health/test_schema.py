"""The message contract: topics, payload round trips, and refusals that name the field."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from agent.errors import AgentError
from agent.health.schema import (
    Birth,
    Disk,
    Event,
    Health,
    Memory,
    ModelInfo,
    SchemaError,
    Status,
    Throttling,
    Topics,
    decode_payload,
    parse_topic,
    subscriptions,
)


def make_health(**overrides: Any) -> Health:
    values: dict[str, Any] = {
        "seq": 7,
        "ts": 1_700_000_000.5,
        "uptime_s": 12.0,
        "cpu_pct": 31.5,
        "load": (0.5, 0.25, 0.1),
        "memory": Memory(total_mb=3800.0, available_mb=2900.0, pct=23.7),
        "disk": Disk(free_mb=12000.0, pct=40.0),
        "rss_mb": 61.2,
        "cpu_temp_c": 52.1,
        "throttling": Throttling(False, False, False, False, True, False, False, False),
        "model": ModelInfo(version="3", sha256="ab" * 32, quantization="int8"),
    }
    values.update(overrides)
    return Health(**values)


# -- topics ---------------------------------------------------------------------------------


def test_topics_without_and_with_fleet() -> None:
    assert Topics("pi-1").status == "orchard/v1/pi-1/status"
    assert Topics("pi-1").health == "orchard/v1/pi-1/health"
    t = Topics(device_id="pi-1", fleet="barn", prefix="farm/v2")
    assert (t.status, t.birth, t.health, t.event) == (
        "farm/v2/barn/pi-1/status",
        "farm/v2/barn/pi-1/birth",
        "farm/v2/barn/pi-1/health",
        "farm/v2/barn/pi-1/event",
    )


def test_parse_topic_round_trips_and_unpacks() -> None:
    fleet, device, kind = parse_topic("orchard/v1/barn/pi-1/event")
    assert (fleet, device, kind) == ("barn", "pi-1", "event")
    assert parse_topic(Topics("pi-2").health) == (None, "pi-2", "health")
    assert parse_topic("x/y/pi-2/birth", prefix="x/y").kind == "birth"


@pytest.mark.parametrize(
    ("topic", "field"),
    [
        ("other/v1/pi-1/status", "topic"),
        ("orchard/v1/status", "topic"),
        ("orchard/v1/a/b/c/status", "topic"),
        ("orchard/v1/pi-1/readings", "topic.kind"),
        ("orchard/v1/pi 1/status", "topic.device_id"),
        ("orchard/v1/b@d/pi-1/status", "topic.fleet"),
    ],
)
def test_parse_topic_refuses_foreign_topics(topic: str, field: str) -> None:
    with pytest.raises(SchemaError) as info:
        parse_topic(topic)
    assert info.value.field == field


@pytest.mark.parametrize("bad", ["a/b", "+", "#", "", "x" * 64])
def test_topics_refuse_names_that_break_topic_levels(bad: str) -> None:
    with pytest.raises(SchemaError, match="device_id"):
        Topics(bad)


def test_subscriptions_cover_both_shapes() -> None:
    assert subscriptions() == ("orchard/v1/+/+", "orchard/v1/+/+/+")


# -- payloads -------------------------------------------------------------------------------


def test_payloads_round_trip_through_json() -> None:
    health = make_health()
    assert Health.from_json(health.to_json()) == health
    assert decode_payload("health", health.to_json().encode()) == health
    status = Status(state="alert", session=3, ts=1.0, reasons=("throttled",))
    assert Status.from_json(status.to_json()) == status
    birth = Birth(device_id="pi-1", ts=1.0, session=1, board="Raspberry Pi 4 Model B Rev 1.5")
    assert decode_payload("birth", birth.to_json()) == birth
    event = Event(kind="model_swap", ts=2.0, data={"from": "2", "to": "3", "ok": True})
    assert Event.from_json(event.to_json()) == event


def test_schema_error_is_an_agent_error_naming_field_value_expectation() -> None:
    payload = json.loads(make_health().to_json())
    payload["memory"]["pct"] = 120
    with pytest.raises(AgentError) as info:
        Health.validate(payload)
    err = info.value
    assert isinstance(err, SchemaError)
    assert (err.field, err.value) == ("health.memory.pct", 120)
    assert str(err) == "health.memory.pct: expected a number in [0, 100]. Received: pct=120.0"


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("seq",), -1, "health.seq"),
        (("seq",), True, "health.seq"),
        (("cpu_pct",), "high", "health.cpu_pct"),
        (("load",), [1.0, 2.0], "health.load"),
        (("load",), [1.0, -2.0, 0.0], "health.load[1]"),
        (("throttling", "throttled"), 1, "health.throttling.throttled"),
        (("federation", "supernode"), "dancing", "health.federation.supernode"),
        (("training", "state"), "Running Now", "health.training.state"),
        (("model", "sha256"), None, "health.model.sha256"),
    ],
)
def test_wrong_values_are_named(path: tuple[str, ...], value: Any, field: str) -> None:
    payload = json.loads(make_health().to_json())
    target = payload
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(SchemaError) as info:
        Health.validate(payload)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("where", "key"),
    [((), "temp_c"), ((), "readings"), (("sensors",), "values"), (("memory",), "history")],
)
def test_unknown_keys_are_refused_so_no_readings_can_ride_along(
    where: tuple[str, ...], key: str
) -> None:
    payload = json.loads(make_health().to_json())
    target = payload
    for part in where:
        target = target[part]
    target[key] = [21.3, 21.4]
    with pytest.raises(SchemaError, match="no such field") as info:
        Health.validate(payload)
    assert info.value.field == ".".join(("health", *where, key))


def test_missing_required_field_is_named() -> None:
    payload = json.loads(make_health().to_json())
    del payload["uptime_s"]
    with pytest.raises(SchemaError, match="required") as info:
        Health.validate(payload)
    assert info.value.field == "health.uptime_s"


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe", b"not json", b"[1, 2]", b'{"state": "ready", "session": 1, "ts": NaN}'],
)
def test_garbage_payloads_raise_schema_error(raw: bytes) -> None:
    with pytest.raises(SchemaError):
        decode_payload("status", raw)


def test_oversized_payload_and_unknown_kind_are_refused() -> None:
    with pytest.raises(SchemaError, match="bytes"):
        decode_payload("health", b" " * (65 * 1024))
    with pytest.raises(SchemaError) as info:
        decode_payload("readings", b"{}")
    assert info.value.field == "topic.kind"


def test_event_data_must_be_flat_scalars() -> None:
    with pytest.raises(SchemaError) as info:
        Event.validate({"kind": "error", "ts": 1.0, "data": {"window": [1.0, 2.0]}})
    assert info.value.field == "event.data.window"


def test_status_state_is_one_of_the_contract_states() -> None:
    with pytest.raises(SchemaError, match="'lost'") as info:
        Status.validate({"state": "sleepy", "session": 1, "ts": 1.0})
    assert info.value.field == "status.state"


def test_schema_imports_neither_paho_nor_psutil() -> None:
    code = (
        "import sys, agent.health.schema; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('paho', 'psutil')]; "
        "sys.exit(1 if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
