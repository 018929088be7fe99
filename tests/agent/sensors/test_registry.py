"""Registry, option parsing and building sensors from config tables."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from agent.errors import ConfigError
from agent.options import Options
from agent.sensors import build_sensors, get, names, register, registry
from agent.sensors.base import Clock, DriverBase, Feature
from agent.sensors.config import SensorSettings
from agent.sensors.synthetic import SyntheticDriver
from agent.types import Reading

from .conftest import FakeClock


def test_get_returns_driver_classes_lazily() -> None:
    assert get("synthetic") is SyntheticDriver
    assert {"system", "bme280", "mqtt", "csv", "synthetic", "image_dir"} <= set(names())


def test_unknown_driver_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        get("bme28O", key="sensors.room.driver")
    message = str(info.value)
    assert message.startswith("sensors.room.driver: expected one of 'bme280', 'csv'")
    assert "did you mean 'bme280'?" in message and "Received: driver='bme28O'" in message


class EchoDriver(DriverBase):
    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], *, clock: Clock) -> EchoDriver:
        Options(f"sensors.{name}", options).done()
        return cls(name, [Feature("echo", "")], clock)

    def read(self) -> list[Reading]:
        return [self._reading({"echo": 1.0})]


def test_register_adds_a_driver(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_registered", {})
    register("echo_test", EchoDriver)
    [sensor] = build_sensors({"e": {"driver": "echo_test", "interval_s": 2}}, clock=clock)
    assert sensor.config.interval_s == 2.0 and sensor.driver.read()[0].values == {"echo": 1.0}


def test_build_sensors_splits_common_keys_from_options(tmp_path: Path, clock: FakeClock) -> None:
    sensors = build_sensors(
        {
            "sim": {"driver": "synthetic", "seed": 3, "ranges": {"co2_ppm": [350, 2000]}},
            "off": {"driver": "system", "enabled": False},
            "board": {"driver": "system", "root": str(tmp_path), "timeout_s": 0.5},
        },
        clock=clock,
    )
    assert [s.config.name for s in sensors] == ["sim", "board"]
    assert sensors[0].config.options == {"seed": 3}
    assert sensors[0].config.ranges == {"co2_ppm": (350.0, 2000.0)}
    assert sensors[1].config.timeout_s == 0.5


@pytest.mark.parametrize(
    ("tables", "key"),
    [
        ({"a": {}}, "sensors.a.driver"),
        ({"a": {"driver": "nope"}}, "sensors.a.driver"),
        ({"a b": {"driver": "system"}}, "sensors.a b"),
        ({"a": {"driver": "synthetic", "interval_s": 0}}, "sensors.a.interval_s"),
        ({"a": {"driver": "synthetic", "ranges": {"co2_ppm": [5, 1]}}}, "sensors.a.ranges.co2_ppm"),
        ({"a": {"driver": "synthetic", "ranges": {"nope": [0, 1]}}}, "sensors.a.ranges"),
        ({"a": {"driver": "synthetic", "sede": 1}}, "sensors.a.sede"),
        ({"a": {"driver": "synthetic"}, "b": {"driver": "synthetic"}}, "sensors.b.driver"),
    ],
)
def test_config_errors_name_the_key(tables: dict[str, Any], key: str, clock: FakeClock) -> None:
    with pytest.raises(ConfigError) as info:
        build_sensors(tables, clock=clock)
    assert info.value.key == key


def test_feature_clash_message_names_both_sensors(clock: FakeClock) -> None:
    tables = {"a": {"driver": "synthetic"}, "b": {"driver": "synthetic"}}
    with pytest.raises(ConfigError, match="'temp_c' is already produced by sensor 'a'"):
        build_sensors(tables, clock=clock)


def test_options_messages_follow_keras_style() -> None:
    opts = Options("sensors.x", {"n": -3, "flag": 1, "name": ""})
    with pytest.raises(
        ConfigError, match=r"sensors\.x\.n: expected an integer >= 0\. Received: n=-3"
    ):
        opts.get_int("n", low=0)
    with pytest.raises(ConfigError, match=r"expected true or false\. Received: flag=1"):
        opts.get_bool("flag")
    with pytest.raises(ConfigError, match="expected a non-empty string"):
        opts.get_str("name")
    assert opts.get_float("missing", 2) == 2.0
    assert SensorSettings.from_table("x", {"driver": "csv"}).interval_s == 5.0
