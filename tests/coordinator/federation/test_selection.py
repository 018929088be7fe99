"""The ServerApp's view of the fleet: the registry the health ingest fills, through the policy."""

from __future__ import annotations

import time
from pathlib import Path

from coordinator.federation.round import outcomes as _outcomes
from coordinator.federation.runconfig import RunSettings
from coordinator.federation.selection import AllNodes, RegistryFleet, fleet_for
from coordinator.health.registry import Registry
from tests.coordinator.health.helpers import birth, health, status

BIG = 17580072421072080630  # Flower node ids use all 64 unsigned bits


def _registry(path: Path) -> None:
    reg = Registry(path)
    for name, node, temp in (("cool", 11, 45.0), ("hot", BIG, 91.0)):
        reg.record(name, None, birth(name, interval_s=30))
        reg.record(name, None, status("ready"))
        reg.record(name, None, health(node_id=node, temp=temp, ts=time.time()))
    reg.close()


def test_hot_devices_are_skipped_with_the_reason(tmp_path: Path) -> None:
    _registry(tmp_path / "fleet.sqlite")
    settings = RunSettings(registry=str(tmp_path / "fleet.sqlite"), max_temp_c=80.0)
    fleet = fleet_for(settings)
    assert isinstance(fleet, RegistryFleet)
    eligible, skipped = fleet.select([11, BIG, 99])
    assert eligible == [11, 99]  # 99: never reported health, so not excluded
    assert "91" in skipped[BIG] and "80" in skipped[BIG]


def test_failed_rounds_in_a_row_exclude_a_device(tmp_path: Path) -> None:
    _registry(tmp_path / "fleet.sqlite")
    settings = RunSettings(
        registry=str(tmp_path / "fleet.sqlite"), max_temp_c=100.0, max_failures_in_row=2
    )
    fleet = fleet_for(settings)
    phase = {
        "replies": [{"node_id": 11, "error": {"code": 602, "reason": "over budget"}}],
        "no_reply": [],
    }
    for rnd in (1, 2):
        fleet.record(rnd, _outcomes(phase))
    eligible, skipped = fleet.select([11, BIG])
    assert eligible == [BIG] and 11 in skipped


def test_without_a_registry_every_node_is_offered() -> None:
    fleet = fleet_for(RunSettings())
    assert isinstance(fleet, AllNodes)
    assert fleet.select([3, 1]) == ([3, 1], {})
