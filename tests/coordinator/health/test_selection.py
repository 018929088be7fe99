"""Health-aware selection over a real registry: who is skipped, and the reason given."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.health.schema import Throttling
from coordinator.health.registry import Registry
from coordinator.health.selection import SelectionPolicy, select
from tests.fakes import FakeClock

from .helpers import birth, health, status


@pytest.fixture
def fleet(tmp_path: Path) -> tuple[Registry, FakeClock]:
    clock = FakeClock()
    reg = Registry(tmp_path / "fleet.sqlite", clock=clock, stale_after_intervals=3)
    hot = Throttling(False, False, False, True, False, False, False, True)
    devices: dict[str, tuple[int, str, dict[str, object]]] = {
        "ok": (1, "ready", {}),
        "lost": (2, "lost", {}),
        "hot": (3, "ready", {"temp": 83.5}),
        "throttled": (4, "ready", {"throttling": hot}),
        "tight": (5, "ready", {"available_mb": 90.0}),
        "flaky": (6, "ready", {"failures": 3}),
        "bye": (7, "disconnected", {}),
        "offpi": (8, "ready", {"temp": None, "throttling": None}),  # not a Pi
        "quiet": (9, "ready", {}),
    }
    for name, (node, state, kw) in devices.items():
        reg.record(name, None, birth(name, interval_s=10))
        reg.record(name, None, status(state))
        reg.record(name, None, health(node_id=node, **kw))  # type: ignore[arg-type]
    clock.advance(20)
    for name, (node, _state, kw) in devices.items():
        if name != "quiet":
            reg.record(name, None, health(seq=2, node_id=node, **kw))  # type: ignore[arg-type]
    clock.advance(15)  # "quiet" last heard 35 s ago > 3 x 10 s
    return reg, clock


def test_default_policy_skips_each_unhealthy_device_with_its_reason(
    fleet: tuple[Registry, FakeClock],
) -> None:
    reg, _ = fleet
    sel = select(reg, [1, 2, 3, 4, 5, 6, 7, 8, 9, 77])
    assert sel.eligible == (1, 8, 77)
    assert sel.skipped == {
        2: "lost: lost",
        3: "hot: too hot (cpu 83.5 °C > max_temp_c 80)",
        4: "throttled: throttled now (soft_temp_limit)",
        5: "tight: short of memory (90 MB free < min_free_memory_mb 128)",
        6: "flaky: 3 training failures in a row (max_failures_in_row 3)",
        7: "bye: disconnected",
        9: "quiet: stale (silent 35 s, health every 10 s)",
    }
    assert sel.notes == {77: "no device has reported this node id over MQTT yet"}
    assert list(sel.skipped_json()) == ["2", "3", "4", "5", "6", "7", "9"]


def test_rules_can_be_relaxed_or_switched_off(fleet: tuple[Registry, FakeClock]) -> None:
    reg, _ = fleet
    policy = SelectionPolicy(
        max_temp_c=85.0,
        skip_throttled=False,
        min_free_memory_mb=None,
        max_failures_in_row=None,
        exclude_lost=False,
        exclude_stale=False,
    )
    assert policy.select(reg, range(1, 10)).eligible == tuple(range(1, 10))
    assert SelectionPolicy(max_temp_c=50.0).select(reg, [1]).eligible == (1,)  # 50.0 is not > 50
    assert SelectionPolicy(max_temp_c=49.5).select(reg, [1]).skipped == {
        1: "ok: too hot (cpu 50.0 °C > max_temp_c 49.5)"
    }


def test_a_round_failure_recorded_by_the_coordinator_counts(
    fleet: tuple[Registry, FakeClock],
) -> None:
    reg, _ = fleet
    policy = SelectionPolicy(max_failures_in_row=2)
    reg.record_outcome("ok", 1, ok=False)
    assert policy.select(reg, [1]).eligible == (1,)
    reg.record_outcome("ok", 2, ok=False)
    assert policy.select(reg, [1]).skipped == {
        1: "ok: 2 training failures in a row (max_failures_in_row 2)"
    }
    reg.record_outcome("ok", 3, ok=True)
    assert policy.select(reg, [1]).eligible == (1,)


def test_policy_from_a_table_and_node_outcomes(fleet: tuple[Registry, FakeClock]) -> None:
    from coordinator.errors import InvalidConfig

    reg, _ = fleet
    policy = SelectionPolicy.from_mapping({"max_temp_c": 90, "max_failures_in_row": False})
    assert policy.max_temp_c == 90.0 and policy.max_failures_in_row is None
    with pytest.raises(InvalidConfig, match=r"selection\.max_temp_c: expected a finite number"):
        SelectionPolicy.from_mapping({"max_temp_c": "warm"})
    assert reg.record_node_outcome(1, 5, ok=False, outcome="timeout")
    assert not reg.record_node_outcome(404, 5, ok=False)
    rec = reg.device("ok")
    assert rec is not None and (rec.last_round, rec.last_outcome) == (5, "timeout")
