"""Device registry on a real SQLite file, with the suite's FakeClock for staleness."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent.health.schema import Event, Throttling
from coordinator.errors import RegistryError
from coordinator.health.registry import Registry
from tests.fakes import FakeClock

from .helpers import birth, health, status


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(path: Path, clock: FakeClock, **kw: float) -> Registry:
    return Registry(path, clock=clock, **kw)


def test_status_birth_health_make_one_record(tmp_path: Path, clock: FakeClock) -> None:
    reg = make(tmp_path / "r.sqlite", clock)
    reg.record("pi-1", "barn", status("ready", ts=clock.now))
    reg.record("pi-1", "barn", birth("pi-1", interval_s=10, ts=clock.now))
    clock.advance(4)
    reg.record("pi-1", "barn", health(temp=61.5, node_id=42, version="v7", ts=clock.now))
    rec = reg.device("pi-1")
    assert rec is not None
    assert (rec.fleet, rec.state, rec.session, rec.interval_s) == ("barn", "ready", 1, 10.0)
    assert (rec.cpu_temp_c, rec.model_version, rec.node_id) == (61.5, "v7", 42)
    assert rec.first_seen == clock.now - 4 and rec.last_seen == clock.now
    assert rec.birth is not None and rec.birth.board.startswith("Raspberry Pi 4")
    assert reg.device_for_node(42) == rec
    assert reg.device("nope") is None and reg.device_for_node(7) is None


def test_stale_after_three_missed_intervals_of_the_devices_own_interval(
    tmp_path: Path, clock: FakeClock
) -> None:
    reg = make(tmp_path / "r.sqlite", clock, stale_after_intervals=3, default_interval_s=30)
    reg.record("fast", None, birth("fast", interval_s=5))
    reg.record("fast", None, status("ready"))
    reg.record("slow", None, status("ready"))  # no birth: the default 30 s interval
    clock.advance(15)
    assert reg.device("fast").state == "ready"  # type: ignore[union-attr]
    clock.advance(0.1)  # 15.1 s > 3 x 5 s
    assert reg.device("fast").state == "stale"  # type: ignore[union-attr]
    assert reg.device("slow").state == "ready"  # type: ignore[union-attr]
    assert reg.counts() == {"stale": 1, "ready": 1}
    reg.record("fast", None, health(seq=2))  # heard from again
    assert reg.device("fast").state == "ready"  # type: ignore[union-attr]
    clock.advance(90)
    assert reg.counts() == {"stale": 2}


def test_lost_and_disconnected_win_over_stale(tmp_path: Path, clock: FakeClock) -> None:
    reg = make(tmp_path / "r.sqlite", clock)
    reg.record("a", None, status("lost"))
    reg.record("b", None, status("disconnected"))
    clock.advance(10_000)
    assert [r.state for r in reg.devices()] == ["lost", "disconnected"]


def test_retained_replay_does_not_count_as_hearing_from_a_device(
    tmp_path: Path, clock: FakeClock
) -> None:
    reg = make(tmp_path / "r.sqlite", clock)
    sent = clock.now - 1000  # the broker kept this status for a long time
    reg.record("pi-1", None, status("ready", ts=sent), retained=True)
    rec = reg.device("pi-1")
    assert rec is not None and rec.last_seen == sent and rec.state == "stale"


def test_an_older_status_does_not_overwrite_a_newer_session(
    tmp_path: Path, clock: FakeClock
) -> None:
    reg = make(tmp_path / "r.sqlite", clock)
    reg.record("pi-1", None, status("ready", session=5, ts=clock.now))
    reg.record("pi-1", None, status("lost", session=4, ts=clock.now - 60))
    assert reg.device("pi-1").status == "ready"  # type: ignore[union-attr]
    reg.record("pi-1", None, status("alert", session=5, ts=clock.now + 1))
    reg.record("pi-1", None, status("ready", session=6, ts=clock.now - 5))  # clock stepped back
    assert reg.device("pi-1").status == "ready"  # type: ignore[union-attr]
    assert reg.device("pi-1").session == 6  # type: ignore[union-attr]


def test_persists_across_reopen(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "nested" / "fleet.sqlite"
    reg = make(path, clock)
    reg.record("pi-1", None, status("ready"))
    reg.record("pi-1", None, health(node_id=3))
    reg.record_outcome("pi-1", 4, ok=False)
    reg.close()
    again = make(path, clock)
    rec = again.device("pi-1")
    assert rec is not None and rec.status == "ready" and rec.node_id == 3
    assert (rec.last_round, rec.last_outcome, rec.failures_in_row) == (4, "failed", 1)
    assert len(again.history("pi-1")) == 1


def test_node_id_belongs_to_the_latest_device_reporting_it(
    tmp_path: Path, clock: FakeClock
) -> None:
    reg = make(tmp_path / "r.sqlite", clock)
    reg.record("old", None, health(node_id=9))
    reg.record("new", None, health(node_id=9))
    assert reg.device_for_node(9).device_id == "new"  # type: ignore[union-attr]
    assert reg.device("old").node_id is None  # type: ignore[union-attr]


def test_outcomes_count_failures_in_a_row(tmp_path: Path, clock: FakeClock) -> None:
    reg = make(tmp_path / "r.sqlite", clock)
    reg.record("pi-1", None, health(failures=1))
    for round_ in (1, 2, 3):
        reg.record_outcome("pi-1", round_, ok=False, outcome="timeout")
    rec = reg.device("pi-1")
    assert rec is not None and rec.failures_in_row == 3 and rec.failures == 3
    assert rec.summary()["last_outcome"] == "timeout"
    reg.record_outcome("pi-1", 4, ok=True)
    rec = reg.device("pi-1")
    assert rec is not None and rec.failures_in_row == 0
    assert rec.failures == 1  # the device still reports one of its own


def test_history_sparklines_events_and_retention(tmp_path: Path, clock: FakeClock) -> None:
    reg = make(tmp_path / "r.sqlite", clock, retention_s=3600)
    for i in range(5):
        reg.record("a", None, health(seq=i, temp=40.0 + i))
        reg.record("b", None, health(seq=i, temp=60.0 - i))
        clock.advance(600)
    reg.record("a", None, Event(kind="model_swap", ts=clock.now, data={"version": "v2"}))
    points = reg.history("a")
    assert [p["cpu_temp_c"] for p in points] == [40.0, 41.0, 42.0, 43.0, 44.0]
    assert reg.history("a", since=points[3]["ts"]) == points[3:]
    assert reg.sparklines("cpu_temp_c", points=2) == {"a": [43.0, 44.0], "b": [57.0, 56.0]}
    assert reg.events("a")[0]["kind"] == "model_swap"
    with pytest.raises(RegistryError, match="Received: metric='secret'"):
        reg.sparklines("secret")
    clock.advance(1201)  # retention cutoff just past the second point (600 s)
    assert reg.prune() == 2 * 2
    assert len(reg.history("a")) == 3


def test_throttle_flags_and_summary(tmp_path: Path, clock: FakeClock) -> None:
    reg = make(tmp_path / "r.sqlite", clock)
    flags = Throttling(True, False, True, False, True, False, True, False)
    reg.record("pi-1", None, health(throttling=flags, p95=2.5))
    rec = reg.device("pi-1")
    assert rec is not None and rec.throttled_now == ("under_voltage", "throttled")
    row = rec.summary()
    assert row["throttled"] == ["under_voltage", "throttled"] and row["inference_p95_ms"] == 2.5
    assert row["state"] == "unknown"  # health but no status yet


def test_concurrent_writers_and_readers(tmp_path: Path, clock: FakeClock) -> None:
    reg = make(tmp_path / "r.sqlite", clock)
    errors: list[BaseException] = []

    def write(name: str) -> None:
        try:
            for i in range(50):
                reg.record(name, None, health(seq=i))
                reg.devices()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"d{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert sorted(len(reg.history(f"d{i}")) for i in range(4)) == [50] * 4


def test_unopenable_path_is_a_registry_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(RegistryError, match="cannot open the device registry"):
        Registry(tmp_path / "file" / "fleet.sqlite")


def test_the_last_will_wins_although_stamped_at_connect(tmp_path: Path, clock: FakeClock) -> None:
    reg = make(tmp_path / "r.sqlite", clock)
    will = status("lost", session=3, ts=clock.now)  # set at CONNECT
    reg.record("pi-1", None, status("ready", session=3, ts=clock.now + 5))
    reg.record("pi-1", None, will)
    assert reg.device("pi-1").state == "lost"  # type: ignore[union-attr]
    reg.record("pi-1", None, status("lost", session=2, ts=clock.now - 99))  # an older session's
    reg.record("pi-1", None, status("ready", session=4, ts=clock.now + 9))
    reg.record("pi-1", None, status("lost", session=3, ts=clock.now))  # a late copy of the old will
    assert reg.device("pi-1").state == "ready"  # type: ignore[union-attr]


def test_flower_node_ids_use_all_64_unsigned_bits(tmp_path: Path, clock: FakeClock) -> None:
    reg = make(tmp_path / "fleet.sqlite", clock)
    big = 17580072421072080630  # a real SuperNode id: above SQLite's signed 64-bit range
    reg.record("pi-1", None, health(node_id=big))
    rec = reg.device_for_node(big)
    assert rec is not None and rec.device_id == "pi-1" and rec.node_id == big
    assert reg.record_node_outcome(big, 1, ok=True)
