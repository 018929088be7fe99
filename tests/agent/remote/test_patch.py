"""A command's patch as the next config: TOML values, keys that never change remotely, the
check-config validator's errors, and which changes the running agent takes live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.overlay import Overlay
from agent.remote import live
from agent.remote.patch import Refused, Rejected, build, parse_value


def _base(tmp_path: Path) -> dict[str, Any]:
    return {
        "device_id": "pi-1",
        "state_dir": str(tmp_path),
        "sensors": {"env": {"driver": "synthetic", "interval_s": 1.0}},
        "mqtt": {"host": "127.0.0.1", "port": 1883},
        "labels": {"mqtt_topic": "home/labels"},
        "models": {"trust_ca": "/etc/orchard/certs/ca.pem"},
    }


@pytest.mark.parametrize(
    ("text", "value"),
    [("5", 5), ("2.5", 2.5), ('"home/x"', "home/x"), ("[6, 22]", [6, 22]), ("true", True)],
)
def test_values_are_toml_text(text: str, value: object) -> None:
    assert parse_value("k", text) == value


@pytest.mark.parametrize("text", ["5 s", "home/x", "5\nother = 1", ""])
def test_a_value_that_is_not_one_toml_value_is_named(text: str) -> None:
    with pytest.raises(Exception, match=r"^k: expected one TOML value"):
        parse_value("k", text)


def test_a_live_change_builds_the_next_config(tmp_path: Path) -> None:
    base = _base(tmp_path)
    candidate = build(
        base,
        None,
        {"sampling.interval_s": "5", "sensors.env.interval_s": None, "labels.mqtt_topic": None},
        source="command 1",
    )
    assert candidate.changed == (
        "labels.mqtt_topic",
        "sampling.interval_s",
        "sensors.env.interval_s",
    )
    assert candidate.settings.sensors[0].interval_s == 5.0
    assert candidate.settings.labels.mqtt_topic is None  # null: back to the default
    assert candidate.overlay == Overlay(
        {"sampling.interval_s": 5}, ("labels.mqtt_topic", "sensors.env.interval_s")
    )
    assert live.restart_keys(candidate.changed) == ("labels.mqtt_topic",)


def test_every_wrong_key_and_value_is_named_at_once(tmp_path: Path) -> None:
    with pytest.raises(Rejected) as caught:
        build(
            _base(tmp_path),
            None,
            {
                "sampling.interval_s": "-3",
                "training.memry_mb": "300",
                "http.port": '"eighty"',
                "training.allowed_hours": "[6, 22",
            },
            source="command 2",
        )
    errors = caught.value.errors
    assert "training.allowed_hours: expected one TOML value" in errors[0]
    assert "sampling.interval_s: expected a positive number. Received: interval_s=-3" in errors
    assert any("training.memry_mb: expected a known option" in e for e in errors), errors
    assert any("did you mean 'memory_mb'" in e for e in errors), errors
    assert any(e.startswith("http.port: expected") and "'eighty'" in e for e in errors), errors


@pytest.mark.parametrize(
    ("patch", "named"),
    [
        ({"device_id": '"pi-9"'}, "device_id"),
        ({"mqtt.tls_ca": '"/tmp/ca.pem"'}, "mqtt.tls_ca"),
        ({"models.trust_ca": None}, "models.trust_ca"),
        # a whole table replaced or removed reaches the keys inside it
        ({"mqtt": '{host = "evil.example"}'}, "mqtt.host"),
        ({"models": None}, "models.trust_ca"),
        ({"sampling.interval_s": "5", "state_dir": '"/tmp"'}, "state_dir"),
    ],
)
def test_keys_that_never_change_remotely_are_refused(
    tmp_path: Path, patch: dict[str, str | None], named: str
) -> None:
    with pytest.raises(Refused, match=rf"^{named}[,:]"):
        build(_base(tmp_path), None, patch, source="command 3")


def test_live_keys() -> None:
    assert (
        live.restart_keys(
            [
                "sampling.interval_s",
                "sensors.env.interval_s",
                "sensors.env.timeout_s",
                "training.memory_mb",
                "training.allowed_hours",
                "labels.max_per_minute",
                "logging.level",
            ]
        )
        == ()
    )
    assert live.restart_keys(
        ["training.reserve_agent_cpu", "sensors.env.driver", "http.port", "mqtt.keepalive_s"]
    ) == ("training.reserve_agent_cpu", "sensors.env.driver", "http.port", "mqtt.keepalive_s")
    assert live.needs_broker(["mqtt.keepalive_s"]) and not live.needs_broker(["http.port"])
