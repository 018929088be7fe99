"""CSV replay: rows come out when the injected clock says they are due."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from agent.errors import ConfigError, SensorError
from agent.sensors.csv_replay import CsvReplayDriver, parse_time

from .conftest import FakeClock


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data.csv"
    path.write_text(text)
    return path


def make(csv_file: Path, clock: FakeClock, **options: Any) -> CsvReplayDriver:
    return CsvReplayDriver.from_config("replay", {"path": str(csv_file), **options}, clock=clock)


def test_rows_follow_their_timestamps_scaled_by_speed(tmp_path: Path, clock: FakeClock) -> None:
    path = write(
        tmp_path, "ts,temp_c,co2_ppm,label\n100,20.5,400,empty\n110,21,900,occupied\n130,22,950,\n"
    )
    driver = make(path, clock, speed=2.0)
    assert [f.name for f in driver.features] == ["temp_c", "co2_ppm"]
    t0 = clock.now
    [first] = driver.read()
    assert first.ts == t0 and first.values == {"temp_c": 20.5, "co2_ppm": 400.0}
    assert first.label == "empty"
    clock.advance(4.9)
    assert driver.read() == []
    clock.advance(0.1)
    [second] = driver.read()
    assert second.ts == t0 + 5.0 and second.label == "occupied"
    clock.advance(100)
    [third] = driver.read()
    assert third.ts == t0 + 15.0 and third.label is None
    assert driver.read() == [] and driver.finished


def test_catch_up_returns_every_due_row_in_order(tmp_path: Path, clock: FakeClock) -> None:
    path = write(tmp_path, "a,b\n1,2\n3,4\n5,6\n7,8\n")
    driver = make(path, clock, interval_s=10.0, max_rows_per_read=3)
    t0 = clock.now
    driver.read()
    clock.advance(1000)
    rows = driver.read()
    assert [r.ts for r in rows] == [t0 + 10, t0 + 20, t0 + 30]
    assert [r.values["a"] for r in rows] == [3.0, 5.0, 7.0]


def test_loop_continues_time_after_the_last_row(tmp_path: Path, clock: FakeClock) -> None:
    path = write(tmp_path, "timestamp,x\n2024-01-01T00:00:00Z,1\n2024-01-01T00:00:30Z,2\n")
    driver = make(path, clock, loop=True)
    t0 = clock.now
    seen = []
    for _ in range(5):
        seen += [(r.ts - t0, r.values["x"]) for r in driver.read()]
        clock.advance(30)
    assert seen == [(0, 1.0), (30, 2.0), (60, 1.0), (90, 2.0), (120, 1.0)]
    assert not driver.finished


def test_bad_cells_and_rows(tmp_path: Path, clock: FakeClock) -> None:
    path = write(tmp_path, "ts,x\n1,oops\n2,1,extra\nnot-a-time,3\n\n4,5\n")
    driver = make(path, clock, speed=1000.0)
    rows = driver.read()
    clock.advance(1)
    rows += driver.read()
    assert len(rows) == 2
    assert math.isnan(rows[0].values["x"]) and rows[1].values["x"] == 5.0
    assert driver.rejected() == {"bad_row": 1, "bad_timestamp": 1}


def test_file_vanishing_mid_replay_is_a_sensor_error(tmp_path: Path, clock: FakeClock) -> None:
    path = write(tmp_path, "x\n1\n2\n")
    driver = make(path, clock, loop=True)
    driver.read()
    driver.close()
    path.unlink()
    clock.advance(5)
    with pytest.raises(SensorError, match=r"data\.csv"):
        driver.read()


def test_parse_time() -> None:
    assert parse_time("1700000000.5") == 1700000000.5
    assert parse_time("2023-11-14T22:13:20") == 1700000000.0
    assert parse_time("2023-11-14T23:13:20+01:00") == 1700000000.0


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"speed": 0}, "sensors.replay.speed"),
        ({"columns": ["nope"]}, "sensors.replay.columns"),
        ({"ts_column": "time"}, "sensors.replay.ts_column"),
        ({"loop": "yes"}, "sensors.replay.loop"),
        ({"path": "/nonexistent.csv"}, "sensors.replay.path"),
    ],
)
def test_bad_options(tmp_path: Path, clock: FakeClock, options: dict[str, Any], key: str) -> None:
    path = write(tmp_path, "ts,x\n1,2\n")
    with pytest.raises(ConfigError) as info:
        make(path, clock, **options)
    assert info.value.key == key
