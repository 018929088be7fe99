"""System driver: real psutil, sysfs thermal zones from a temp dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import ConfigError, SensorError
from agent.sensors.system import SystemDriver, find_thermal_zone

from .conftest import FakeClock


def make_zone(root: Path, index: int, kind: str, millideg: str) -> Path:
    zone = root / "class" / "thermal" / f"thermal_zone{index}"
    zone.mkdir(parents=True)
    (zone / "type").write_text(kind + "\n")
    (zone / "temp").write_text(millideg + "\n")
    return zone / "temp"


def test_reads_cpu_zone_and_psutil_values(tmp_path: Path, clock: FakeClock) -> None:
    make_zone(tmp_path, 0, "acpitz", "30000")
    make_zone(tmp_path, 1, "cpu-thermal", "48312")
    driver = SystemDriver.from_config("board", {"root": str(tmp_path)}, clock=clock)
    assert [f.name for f in driver.features] == ["cpu_temp_c", "load_1m", "mem_pct", "cpu_pct"]
    [reading] = driver.read()
    assert reading.ts == clock.now
    assert reading.values["cpu_temp_c"] == pytest.approx(48.312)
    for feature in driver.features:
        assert feature.contains(reading.values[feature.name]), feature


def test_explicit_zone_and_fallback_to_lowest(tmp_path: Path) -> None:
    make_zone(tmp_path, 3, "battery", "20000")
    make_zone(tmp_path, 2, "acpitz", "25000")
    assert find_thermal_zone(tmp_path) == tmp_path / "class/thermal/thermal_zone2/temp"
    assert find_thermal_zone(tmp_path, 3) == tmp_path / "class/thermal/thermal_zone3/temp"
    assert find_thermal_zone(tmp_path, 9) is None


def test_no_thermal_zone_means_no_temperature(tmp_path: Path, clock: FakeClock) -> None:
    driver = SystemDriver.from_config("board", {"root": str(tmp_path)}, clock=clock)
    [reading] = driver.read()
    assert "cpu_temp_c" not in reading.values
    assert set(reading.values) == {"load_1m", "mem_pct", "cpu_pct"}


def test_unreadable_temperature_is_a_sensor_error(tmp_path: Path, clock: FakeClock) -> None:
    temp = make_zone(tmp_path, 0, "cpu-thermal", "40000")
    driver = SystemDriver.from_config("board", {"root": str(tmp_path)}, clock=clock)
    temp.write_text("garbage")
    with pytest.raises(SensorError, match="cannot read"):
        driver.read()


def test_real_machine_reads(clock: FakeClock) -> None:
    [reading] = SystemDriver.from_config("board", {}, clock=clock).read()
    assert 0.0 <= reading.values["mem_pct"] <= 100.0


def test_bad_root_is_a_config_error(tmp_path: Path, clock: FakeClock) -> None:
    with pytest.raises(ConfigError, match=r"sensors\.board\.root: expected a path"):
        SystemDriver.from_config("board", {"root": str(tmp_path / "nope")}, clock=clock)
