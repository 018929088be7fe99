"""The rollout store on a real SQLite file: what it keeps survives closing and reopening."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from coordinator.rollout.errors import RolloutError
from coordinator.rollout.settings import Thresholds
from coordinator.rollout.store import Decision, RolloutStore
from tests.fakes import FakeClock

from .helpers import artifact

V1, V2 = artifact("run-1.3"), artifact("run-2.5")
THRESHOLDS = Thresholds(max_accuracy_drop=0.1, max_drift_psi=None, min_predictions=7)


def canary(store: RolloutStore) -> str:
    with store.transaction() as tx:
        rollout = tx.add_rollout(
            kind="canary",
            run_id="run-2",
            round_=5,
            artifact=V2,
            previous_artifact=V1,
            stage="canary",
            canary=["pi-1"],
            control=["pi-2", "pi-3"],
            soak_s=600.0,
            deadline_s=1200.0,
            min_labels=30,
            thresholds=THRESHOLDS,
        )
        tx.set_desired("pi-1", "barn", V2, rollout.id)
        tx.set_current(V1, None)
    return rollout.id


def test_everything_survives_a_reopen(tmp_path: Path) -> None:
    clock = FakeClock()
    store = RolloutStore(tmp_path / "rollout.sqlite", clock=clock)
    rollout_id = canary(store)
    store.add_request("promote", rollout=rollout_id)
    done = store.add_request("start", {"run_id": "run-3", "round": 1})
    with store.transaction() as tx:
        tx.finish_request(done.id, "refused: busy")
        active = store.active()
        assert active is not None
        tx.update_rollout(
            active,
            stage="rolling_back",
            decision=Decision("rollback", "accuracy dropped", "auto", clock.now),
        )
    store.close()

    again = RolloutStore(tmp_path / "rollout.sqlite", clock=clock)
    r = again.rollout(rollout_id)
    assert r is not None and again.active() == r
    assert (r.kind, r.run_id, r.round, r.version, r.previous) == (
        "canary", "run-2", 5, "run-2.5", "run-1.3",
    )  # fmt: skip
    assert (r.artifact, r.previous_artifact) == (V2, V1)
    assert (r.canary, r.control, r.stage) == (("pi-1",), ("pi-2", "pi-3"), "rolling_back")
    assert (r.soak_s, r.deadline_s, r.min_labels, r.thresholds) == (600, 1200, 30, THRESHOLDS)
    assert r.decision == Decision("rollback", "accuracy dropped", "auto", clock.now)
    assert r.soak_ends == clock.now + 600 and r.group("pi-3") == "control"
    desired = again.desired("pi-1")
    assert desired is not None and (desired.fleet, desired.version, desired.rollout) == (
        "barn", "run-2.5", rollout_id,
    )  # fmt: skip
    assert desired.message().model == V2 and not desired.published
    current = again.current()
    assert current is not None and current.artifact == V1
    assert [(q.action, q.rollout) for q in again.pending()] == [("promote", rollout_id)]
    finished = again.request(done.id)
    assert finished is not None and finished.result == "refused: busy"
    assert finished.params == {"run_id": "run-3", "round": 1}
    again.close()


def test_seq_grows_with_every_change_and_is_at_least_unix_time_in_ms(tmp_path: Path) -> None:
    clock = FakeClock(start=1_765_000_000.0)
    store = RolloutStore(tmp_path / "r.sqlite", clock=clock)
    with store.transaction() as tx:
        first = tx.set_desired("pi-1", None, V1, "r-1")
        same = tx.set_desired("pi-1", None, V1, "r-1")
        second = tx.set_desired("pi-1", None, V2, "r-1")
        third = tx.set_desired("pi-1", None, V2, "r-2")  # only the rollout id changed
    assert first is not None and first.seq == 1_765_000_000_000  # unix time in ms
    assert same is None  # asked exactly this already: no new seq, nothing to publish
    assert second is not None and third is not None
    assert (second.seq, third.seq) == (first.seq + 1, first.seq + 2)
    clock.advance(3600)
    with store.transaction() as tx:
        later = tx.set_desired("pi-1", None, V1, "r-3")
    assert later is not None and later.seq == int(clock.now * 1000)
    store.mark_published("pi-1", later.seq)
    assert store.unpublished() == []
    store.close()


def test_a_recreated_store_still_outranks_what_the_boards_acted_on(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "r.sqlite"
    store = RolloutStore(path, clock=clock)
    with store.transaction() as tx:
        for _ in range(5):
            tx.set_desired("pi-1", None, V1, None)
            tx.set_desired("pi-1", None, V2, None)
    acted_on = store.desired("pi-1")
    store.close()
    path.unlink()
    clock.advance(1)
    fresh = RolloutStore(path, clock=clock)
    with fresh.transaction() as tx:
        new = tx.set_desired("pi-1", None, V1, None)
    assert acted_on is not None and new is not None and new.seq > acted_on.seq
    fresh.close()


def test_only_one_rollout_can_be_active(tmp_path: Path) -> None:
    store = RolloutStore(tmp_path / "r.sqlite", clock=FakeClock())
    canary(store)
    with pytest.raises(RolloutError, match="UNIQUE constraint"):
        canary(store)
    assert len(store.rollouts()) == 1  # the second transaction was rolled back whole
    store.close()


def test_a_store_from_a_newer_orchard_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=9")
    db.close()
    with pytest.raises(RolloutError, match="expected schema version <= 1"):
        RolloutStore(path)


def test_a_file_that_is_not_sqlite_is_a_rollout_error(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(RolloutError, match="cannot open the rollout store"):
        RolloutStore(path)
