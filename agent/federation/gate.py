"""The training budget gate: may this board train right now?

Checked by the thin ClientApp before it wakes the trainer, so a hot or throttled board costs
nothing but a short error reply. Inputs are read through a :class:`Probe` (sysfs on a real
board, a fake tree in tests) and an injectable clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agent.federation.budget import TrainingSettings
from agent.sensors.system import find_thermal_zone

# The firmware's get_throttled bits that mean "limited right now" (0: under-voltage,
# 1: ARM frequency capped, 2: throttled, 3: soft temperature limit).
THROTTLED_NOW_MASK = 0xF
_THROTTLE_FILES = (
    "devices/platform/soc/soc:firmware/get_throttled",
    "devices/platform/soc/soc:firmware/raspberrypi-hwmon/get_throttled",
)


class Probe(Protocol):
    def cpu_temp_c(self) -> float | None: ...

    def throttled_now(self) -> bool | None: ...


@dataclass(frozen=True)
class SysfsProbe:
    """Reads ``<root>/class/thermal`` and the firmware's ``get_throttled`` under ``root``."""

    root: Path = Path("/sys")

    def cpu_temp_c(self) -> float | None:
        zone = find_thermal_zone(self.root)
        if zone is None:
            return None
        try:
            return int(zone.read_text().strip()) / 1000.0
        except (OSError, ValueError):
            return None

    def throttled_now(self) -> bool | None:
        for rel in _THROTTLE_FILES:
            try:
                raw = (self.root / rel).read_text().strip()
            except OSError:
                continue
            try:
                return bool(int(raw.removeprefix("throttled="), 16) & THROTTLED_NOW_MASK)
            except ValueError:
                return None
        return None


@dataclass(frozen=True)
class Decision:
    open: bool
    reason: str = ""


def check(
    budget: TrainingSettings,
    probe: Probe,
    clock: Callable[[], float] = time.time,
) -> Decision:
    """Open unless the CPU is too hot, the board is throttled now, or it is outside the hours."""
    temp = probe.cpu_temp_c()
    if temp is not None and temp >= budget.max_temp_c:
        return Decision(False, f"cpu_temp_c {temp:.1f} >= max_temp_c {budget.max_temp_c:g}")
    if budget.skip_when_throttled and probe.throttled_now():
        return Decision(False, "the firmware reports throttling now")
    start, end = budget.allowed_hours
    hour = time.localtime(clock()).tm_hour
    inside = start <= hour < end if start <= end else (hour >= start or hour < end)
    if not inside:
        return Decision(False, f"hour {hour} is outside allowed_hours [{start}, {end})")
    return Decision(True)
