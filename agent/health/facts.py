"""What the board says about itself: device tree, thermal zone, firmware throttle flags, psutil.

Every path hangs off ``root`` (``/`` on a board) so tests build a fake tree; anything absent
(not a Pi, a container, no thermal zone) is ``None``, never an error::

    facts = BoardFacts(Path("/"))
    facts.model()        # "Raspberry Pi 4 Model B Rev 1.5" or None
    facts.throttling()   # Throttling(under_voltage=False, ...) or None off a Pi

Throttle flags come from the firmware's ``get_throttled`` bits (0..3 now, 16..19 has occurred
since boot), read from sysfs (``/sys/devices/platform/soc/soc:firmware/get_throttled``) or, when
that file is missing, from ``vcgencmd get_throttled``.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Final

import psutil

from agent.health.schema import Throttling
from agent.sensors.system import find_thermal_zone

logger = logging.getLogger(__name__)

_NOW_BITS: Final = ("under_voltage", "freq_capped", "throttled", "soft_temp_limit")
_MODEL_PATHS: Final = ("proc/device-tree/model", "sys/firmware/devicetree/base/model")
_SERIAL_PATHS: Final = (
    "proc/device-tree/serial-number",
    "sys/firmware/devicetree/base/serial-number",
)
_THROTTLED_SYSFS: Final = "sys/devices/platform/soc/soc:firmware/get_throttled"
_MB: Final = 1024 * 1024

Runner = Callable[[list[str]], str]


def decode_throttled(bits: int) -> Throttling:
    """Name the firmware's ``get_throttled`` bits (0..3 now, 16..19 occurred since boot)."""
    now = {name: bool(bits >> i & 1) for i, name in enumerate(_NOW_BITS)}
    past = {f"{name}_occurred": bool(bits >> (16 + i) & 1) for i, name in enumerate(_NOW_BITS)}
    return Throttling(**now, **past)


def parse_throttled(text: str) -> int | None:
    """``throttled=0x50005`` (vcgencmd) or ``50005`` (sysfs, hex) as an int; None if garbled."""
    match = re.search(r"(?:0x)?([0-9a-fA-F]+)\s*$", text.strip())
    return int(match.group(1), 16) if match else None


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=2, check=True).stdout


class BoardFacts:
    """Facts read under ``root``; ``vcgencmd`` is found on PATH unless given."""

    def __init__(
        self, root: Path = Path("/"), *, vcgencmd: str | None = None, runner: Runner = _run
    ) -> None:
        self.root = root
        self._vcgencmd = vcgencmd if vcgencmd is not None else shutil.which("vcgencmd")
        self._runner = runner
        self._thermal = find_thermal_zone(root / "sys")
        self._warned: set[str] = set()

    def _first_text(self, paths: tuple[str, ...]) -> str | None:
        for rel in paths:
            try:
                text = (self.root / rel).read_bytes().decode("utf-8", "replace")
            except OSError:
                continue
            text = text.replace("\x00", "").strip()
            if text:
                return text
        return None

    def model(self) -> str | None:
        return self._first_text(_MODEL_PATHS)

    def serial(self) -> str | None:
        return self._first_text(_SERIAL_PATHS)

    def is_pi(self) -> bool:
        return (self.model() or "").startswith("Raspberry Pi")

    def cpu_temp_c(self) -> float | None:
        if self._thermal is None:
            return None
        try:
            return int(self._thermal.read_text().strip()) / 1000.0
        except (OSError, ValueError) as exc:
            self._warn_once("thermal", "cannot read %s: %s", self._thermal, exc)
            return None

    def throttling(self) -> Throttling | None:
        """Decoded flags, or None when neither sysfs nor ``vcgencmd`` offers them."""
        sysfs = self.root / _THROTTLED_SYSFS
        text: str | None = None
        try:
            text = sysfs.read_text()
        except OSError:
            if self._vcgencmd:
                try:
                    text = self._runner([self._vcgencmd, "get_throttled"])
                except (OSError, subprocess.SubprocessError) as exc:
                    self._warn_once("vcgencmd", "vcgencmd get_throttled failed: %s", exc)
        if text is None:
            return None
        bits = parse_throttled(text)
        if bits is None:
            self._warn_once("throttled", "cannot decode get_throttled output %r", text)
            return None
        return decode_throttled(bits)

    def _warn_once(self, key: str, msg: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(msg, *args)


def static_facts(facts: BoardFacts) -> dict[str, object]:
    """The board part of ``birth``: model, serial, OS, Python, CPU count, memory."""
    return {
        "board": facts.model(),
        "serial": facts.serial(),
        "os": _os_name(facts.root),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count() or 0,
        "memory_total_mb": round(psutil.virtual_memory().total / _MB, 1),
    }


def _os_name(root: Path) -> str:
    try:
        for line in (root / "etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}"


class SystemSampler:
    """psutil figures for ``health`` (JSON-shaped): CPU %, load, memory, disk, own RSS."""

    def __init__(self, disk_path: Path = Path("/")) -> None:
        self.disk_path = disk_path
        self._process = psutil.Process()
        psutil.cpu_percent(interval=None)  # prime: the first call always returns 0.0

    def sample(self) -> dict[str, object]:
        vm = psutil.virtual_memory()
        try:
            du = psutil.disk_usage(str(self.disk_path))
            disk = {"free_mb": round(du.free / _MB, 1), "pct": float(du.percent)}
        except OSError:
            disk = {"free_mb": 0.0, "pct": 0.0}
        load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
        return {
            "cpu_pct": min(100.0, float(psutil.cpu_percent(interval=None))),
            "load": [round(v, 2) for v in load],
            "memory": {
                "total_mb": round(vm.total / _MB, 1),
                "available_mb": round(vm.available / _MB, 1),
                "pct": float(vm.percent),
            },
            "disk": disk,
            "rss_mb": round(self._process.memory_info().rss / _MB, 1),
        }
