"""coordinator.toml health sections: defaults, and every wrong key named at once."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from coordinator.errors import InvalidConfig
from coordinator.health.selection import SelectionPolicy
from coordinator.health.settings import FleetHealthSettings


def test_defaults_mean_an_embedded_broker_and_a_local_dashboard() -> None:
    s = FleetHealthSettings.from_mapping({"run": {"anything": 1}})  # other sections are not ours
    assert s.mqtt.embedded and s.mqtt.port == 1883 and s.mqtt.protocol == "auto"
    assert s.registry.resolve_path(Path("runs")) == Path("runs/fleet.sqlite")
    assert (s.dashboard.host, s.dashboard.port) == ("127.0.0.1", 8780)
    assert s.selection == SelectionPolicy()


def test_a_full_file() -> None:
    doc = tomllib.loads(
        """
        [mqtt]
        host = "broker.lan"
        tls_ca = "ca.pem"
        tls_cert = "c.pem"
        tls_key = "k.pem"
        username = "coord"
        password = "pw"
        fleet = "barn"
        [registry]
        path = "/var/lib/orchard/fleet.sqlite"
        stale_after_intervals = 5
        [dashboard]
        port = 0
        [selection]
        max_temp_c = 75
        min_free_memory_mb = false
        """
    )
    s = FleetHealthSettings.from_mapping(doc)
    assert s.mqtt.port == 8883 and s.mqtt.fleet == "barn" and not s.mqtt.embedded
    assert s.registry.path == Path("/var/lib/orchard/fleet.sqlite")
    assert s.registry.stale_after_intervals == 5.0 and s.dashboard.port == 0
    assert s.selection.max_temp_c == 75.0 and s.selection.min_free_memory_mb is None


def test_every_wrong_key_is_named_with_its_value_and_expectation() -> None:
    doc = {
        "mqtt": {"port": 70000, "protocol": "4", "fleet": "a/b", "tls_cert": "c.pem"},
        "registry": {"stale_after_intervals": 0, "retention": 3},
        "dashboard": {"enabled": "yes"},
        "selection": {"max_temp_c": "hot", "max_failures_in_row": 0},
    }
    with pytest.raises(InvalidConfig) as info:
        FleetHealthSettings.from_mapping(doc)
    errors = info.value.errors
    assert "mqtt.port: expected an integer in [0, 65535]. Received: port=70000" in errors
    assert "mqtt.protocol: expected one of 'auto', '5', '3.1.1'. Received: protocol='4'" in errors
    assert any(e.startswith("mqtt.fleet: expected 1-63 letters") for e in errors)
    assert (
        "mqtt.tls_key: expected tls_cert and tls_key set together. Received: tls_key=None" in errors
    )
    assert any(
        e.startswith("registry.stale_after_intervals: expected a finite number") for e in errors
    )
    assert any(e.startswith("registry.retention: expected a known option (") for e in errors)
    assert "dashboard.enabled: expected true or false. Received: enabled='yes'" in errors
    assert any(e.startswith("selection.max_temp_c: expected a finite number") for e in errors)
    assert any(
        e.startswith("selection.max_failures_in_row: expected an integer >= 1") for e in errors
    )
    assert len(errors) == 9
    assert str(info.value).startswith("coordinator.toml: 9 problem(s):")


def test_a_section_that_is_not_a_table() -> None:
    with pytest.raises(InvalidConfig, match="mqtt: expected a table"):
        FleetHealthSettings.from_mapping({"mqtt": "localhost"})


def test_embedded_broker_refuses_settings_it_cannot_honour() -> None:
    with pytest.raises(InvalidConfig, match=r"mqtt\.host: expected a broker host when TLS"):
        FleetHealthSettings.from_mapping({"mqtt": {"tls_ca": "ca.pem"}})
    with pytest.raises(InvalidConfig, match=r"mqtt\.port: expected a port in \[1, 65535\]"):
        FleetHealthSettings.from_mapping({"mqtt": {"host": "b", "port": 0}})
