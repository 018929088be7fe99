from __future__ import annotations

import time
from pathlib import Path

from agent.federation.budget import TrainingSettings
from agent.federation.gate import SysfsProbe, check


def _sysfs(root: Path, milli_c: int | None, throttled: str | None) -> Path:
    if milli_c is not None:
        zone = root / "class" / "thermal" / "thermal_zone0"
        zone.mkdir(parents=True)
        (zone / "type").write_text("cpu-thermal\n")
        (zone / "temp").write_text(f"{milli_c}\n")
    if throttled is not None:
        fw = root / "devices" / "platform" / "soc" / "soc:firmware"
        fw.mkdir(parents=True)
        (fw / "get_throttled").write_text(throttled + "\n")
    return root


def _noon() -> float:
    return time.mktime(time.strptime("2026-11-22 12:00", "%Y-%m-%d %H:%M"))


def test_open_when_cool_not_throttled_and_inside_hours(tmp_path: Path) -> None:
    probe = SysfsProbe(_sysfs(tmp_path, 48_000, "0"))
    assert check(TrainingSettings(), probe, clock=_noon).open


def test_closed_when_hot(tmp_path: Path) -> None:
    probe = SysfsProbe(_sysfs(tmp_path, 81_500, "0"))
    decision = check(TrainingSettings(max_temp_c=75.0), probe, clock=_noon)
    assert not decision.open and "81.5" in decision.reason


def test_closed_when_throttled_now_but_not_for_past_events(tmp_path: Path) -> None:
    probe = SysfsProbe(_sysfs(tmp_path, 40_000, "50000"))  # only "has occurred" bits
    assert check(TrainingSettings(), probe, clock=_noon).open
    probe = SysfsProbe(_sysfs(tmp_path / "now", 40_000, "50005"))  # under-voltage now
    decision = check(TrainingSettings(), probe, clock=_noon)
    assert not decision.open and "throttling" in decision.reason
    assert check(TrainingSettings(skip_when_throttled=False), probe, clock=_noon).open


def test_allowed_hours_including_overnight_windows(tmp_path: Path) -> None:
    probe = SysfsProbe(tmp_path)  # no thermal zone, no firmware: both unknown
    assert not check(TrainingSettings(allowed_hours=(0, 6)), probe, clock=_noon).open
    assert check(TrainingSettings(allowed_hours=(22, 14)), probe, clock=_noon).open
    assert not check(TrainingSettings(allowed_hours=(22, 6)), probe, clock=_noon).open
