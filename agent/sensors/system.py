"""The board itself as a sensor: CPU temperature (sysfs), load, memory and CPU use (psutil).

Options (all optional):

    root          sysfs root, default "/sys" (tests point it at a temp dir)
    thermal_zone  which ``thermal_zone<N>`` to read; default: the first whose ``type`` looks
                  like the CPU (cpu-thermal, x86_pkg_temp, soc...), else the lowest numbered

With no readable thermal zone (containers, some VMs) ``cpu_temp_c`` is simply not declared.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from agent.errors import SensorError
from agent.options import Options
from agent.sensors.base import Clock, DriverBase, Feature
from agent.types import Reading

logger = logging.getLogger(__name__)

CPU_TEMP = Feature("cpu_temp_c", "°C", -40.0, 125.0)
LOAD_1M = Feature("load_1m", "", 0.0, 1000.0)
MEM_PCT = Feature("mem_pct", "%", 0.0, 100.0)
CPU_PCT = Feature("cpu_pct", "%", 0.0, 100.0)
_CPU_ZONE_TYPES = ("cpu", "x86_pkg_temp", "soc", "bcm2835_thermal", "coretemp")


def find_thermal_zone(root: Path, zone: int | None = None) -> Path | None:
    """The ``temp`` file of the CPU thermal zone under ``root``, or None when there is none."""
    base = root / "class" / "thermal"
    if zone is not None:
        temp = base / f"thermal_zone{zone}" / "temp"
        return temp if temp.is_file() else None
    zones = []
    for entry in base.glob("thermal_zone*"):
        match = re.fullmatch(r"thermal_zone(\d+)", entry.name)
        if match and (entry / "temp").is_file():
            zones.append((int(match.group(1)), entry))
    zones.sort()
    for _, entry in zones:
        try:
            kind = (entry / "type").read_text().strip().lower()
        except OSError:
            continue
        if kind.startswith(_CPU_ZONE_TYPES):
            return entry / "temp"
    return zones[0][1] / "temp" if zones else None


class SystemDriver(DriverBase):
    """CPU temperature, 1-minute load average, memory % and CPU % of this machine."""

    def __init__(self, name: str, *, clock: Clock, thermal_file: Path | None) -> None:
        features = [LOAD_1M, MEM_PCT, CPU_PCT]
        if thermal_file is not None:
            features.insert(0, CPU_TEMP)
        super().__init__(name, features, clock)
        self._thermal_file = thermal_file
        psutil.cpu_percent(interval=None)  # prime: the first call always returns 0.0

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], *, clock: Clock) -> SystemDriver:
        opts = Options(f"sensors.{name}", options)
        root = opts.get_path("root", kind="directory") if opts.given("root") else Path("/sys")
        zone = opts.optional_int("thermal_zone", low=0)
        opts.done()
        thermal_file = find_thermal_zone(root, zone)
        if thermal_file is None:
            logger.info("sensor %s: no thermal zone under %s; cpu_temp_c not reported", name, root)
        return cls(name, clock=clock, thermal_file=thermal_file)

    def read(self) -> list[Reading]:
        values: dict[str, float] = {}
        if self._thermal_file is not None:
            values[CPU_TEMP.name] = self._read_temp(self._thermal_file)
        try:
            values[LOAD_1M.name] = float(os.getloadavg()[0])
            values[MEM_PCT.name] = float(psutil.virtual_memory().percent)
            values[CPU_PCT.name] = float(psutil.cpu_percent(interval=None))
        except (OSError, psutil.Error) as exc:
            raise SensorError(f"sensor {self.name}: reading system counters failed: {exc}") from exc
        return [self._reading(values)]

    def _read_temp(self, path: Path) -> float:
        try:
            raw = path.read_text().strip()
            return int(raw) / 1000.0
        except (OSError, ValueError) as exc:
            raise SensorError(f"sensor {self.name}: cannot read {path}: {exc}") from exc
