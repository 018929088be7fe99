"""Fixtures for provisioning tests: a fleet CA, device options, a tiny offline wheelhouse."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from provisioning.ca import FleetCA
from provisioning.options import DeviceSettings

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTestsOnly0000000000000000000000 me@laptop"


@pytest.fixture
def fleet_ca(tmp_path: Path) -> FleetCA:
    return FleetCA.init(tmp_path / "ca")


@pytest.fixture
def make_options(tmp_path: Path) -> Callable[..., DeviceSettings]:
    """Options with a tiny offline wheelhouse (the default install source)."""

    def make(**overrides: Any) -> DeviceSettings:
        values: dict[str, Any] = {
            "device_id": "kitchen-pi",
            "wheelhouse": tmp_path / "wheels",
            "ssh_keys": [SSH_KEY],
            "wifi_ssid": "orchard-net",
            "wifi_psk": "correct horse battery",
            "wifi_country": "DE",
            "coordinator": "coord.example:9092",
            "mqtt": "mqtts://coord.example",
            "base_config": {
                "sensors": {"room": {"driver": "bme280", "interval_s": 10, "address": 0x76}},
                "training": {"memory_mb": 512, "cpu_quota_pct": 75, "nice": 12},
            },
        }
        values.update(overrides)
        if values.get("from_index"):
            values.pop("wheelhouse")
        elif values.get("wheelhouse") == tmp_path / "wheels":
            fake_wheel(tmp_path / "wheels")
        return DeviceSettings.from_mapping({k: v for k, v in values.items() if v is not None})

    return make


def fake_wheel(directory: Path) -> Path:
    """A tiny ``orchard-fl`` wheel with an ``orchard-agent`` script: offline installs in tests."""
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / "orchard_fl-0.0.1-py3-none-any.whl"
    info = "orchard_fl-0.0.1.dist-info"
    files = {
        "orchard_fake/__init__.py": "def main() -> None:\n    print('fake agent')\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: orchard-fl\nVersion: 0.0.1\n"
        "Provides-Extra: agent\nProvides-Extra: train\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
        f"{info}/entry_points.txt": "[console_scripts]\norchard-agent = orchard_fake:main\n",
    }
    record = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record
    with zipfile.ZipFile(wheel, "w") as zf:  # fixed timestamps: the same bytes every time
        for name, text in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), text)
    return directory
