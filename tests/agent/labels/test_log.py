"""The prediction log on its own: ids, the background writer, a clean stop, bounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import StoreError
from agent.labels import PredictionLog
from agent.labels import log as log_module
from tests.fakes import FakeClock
from tests.waiting import wait_until

RESULT = {"label": "empty", "scores": {"empty": 0.7, "occupied": 0.3}}


def rows(log: PredictionLog) -> list[tuple[object, ...]]:
    log.flush()
    return log._conn.execute(
        "SELECT seq, ts, version, output, output_values, confidence, failed, sample_ts"
        " FROM predictions ORDER BY seq"
    ).fetchall()


def test_ids_are_unique_parseable_and_never_reused(tmp_path: Path) -> None:
    path = tmp_path / "predictions.db"
    clock = FakeClock()
    log = PredictionLog(path, max_predictions=100, max_age_s=60.0, clock=clock, retention_s=0)
    ids = log.ids(3) + log.ids(2)
    assert len(set(ids)) == 5
    assert [log.seq_of(i) for i in ids] == [1, 2, 3, 4, 5]
    assert all(log.id_of(log.seq_of(i) or 0) == i for i in ids)
    for foreign in ("", "x", ids[0] + "-1", ids[0].upper(), "00000000-1", ids[0][:-1] + "g"):
        assert log.seq_of(foreign) is None, foreign
    log.record(ids[:3], "1", [RESULT] * 3, 0.003)
    clock.advance(120.0)  # every row expires
    log.flush()
    assert rows(log) == []
    log.close()
    again = PredictionLog(path, clock=clock)
    try:
        fresh = again.ids(1)[0]
        assert fresh not in ids and again.seq_of(fresh) == 6  # not 1: ids are never reused
        assert again.seq_of(ids[0]) == 1  # the same log (file) recognises its old ids
    finally:
        again.close()
    other = PredictionLog(tmp_path / "other.db")
    try:
        assert other.seq_of(ids[0]) is None  # another log's id is unknown here
    finally:
        other.close()


def test_what_is_logged(tmp_path: Path) -> None:
    clock = FakeClock(100.0)
    log = PredictionLog(None, clock=clock)
    try:
        log.record(log.ids(2), "3", [RESULT, RESULT], 0.004, sample_ts=99.5)
        log.record(log.ids(1), "3", [{"values": {"a": 1.5, "b": -2.0}}], 0.001)
        log.record(log.ids(1), "3", [{"score": 0.25, "threshold": 0.5, "anomaly": False}], 0.001)
        log.record_failure("3", 2, 0.002)
        assert rows(log) == [
            (1, 100.0, "3", "empty", None, 0.7, 0, 99.5),
            (2, 100.0, "3", "empty", None, 0.7, 0, 99.5),
            (3, 100.0, "3", None, "[1.5, -2.0]", None, 0, None),
            (4, 100.0, "3", None, "[0.25]", None, 0, None),
            (5, 100.0, "3", None, None, None, 1, None),
            (6, 100.0, "3", None, None, None, 1, None),
        ]
        latency = [
            r[0] for r in log._conn.execute("SELECT latency_ms FROM predictions ORDER BY seq")
        ]
        assert latency == [2.0, 2.0, 1.0, 1.0, 1.0, 1.0]  # the request's time, shared
    finally:
        log.close()


def test_the_writer_thread_writes_and_a_clean_stop_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "predictions.db"
    log = PredictionLog(path, flush_s=0.05)
    log.start()
    log.record(log.ids(1), "1", [RESULT], 0.001)
    wait_until(lambda: log.generation > 0, 5.0, "the writer to commit")
    log._stop.set()  # stop the writer: what follows is written only by close()
    assert log._thread is not None
    log._thread.join(5.0)
    for _ in range(50):
        log.record(log.ids(2), "1", [RESULT, RESULT], 0.001)
    log.close()
    log.close()  # idempotent
    with pytest.raises(StoreError, match="used after close"):
        log.flush()
    again = PredictionLog(path)
    try:
        assert again.count() == 101
    finally:
        again.close()


def test_bounded_by_count_and_age(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    log = PredictionLog(None, max_predictions=100, max_age_s=500.0, clock=clock, retention_s=10.0)
    try:
        for _ in range(150):  # seq k at ts 999 + k
            log.record(log.ids(1), "1", [RESULT], 0.001)
            clock.advance(1.0)
        assert [r[0] for r in rows(log)] == list(range(51, 151))  # the newest 100
        log.record(log.ids(1), "1", [RESULT], 0.001)
        clock.advance(1.0)
        assert len(rows(log)) == 101  # retention runs every 10 s at most
        clock.advance(9.0)
        assert [r[0] for r in rows(log)] == list(range(52, 152))
        clock.advance(450.0)  # now 1610: what was written before 1110 (seq < 111) expires
        assert [r[0] for r in rows(log)] == list(range(111, 152))
    finally:
        log.close()


def test_a_full_queue_drops_and_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log_module, "MAX_PENDING", 4)
    log = PredictionLog(None)
    log._pending = log_module.collections.deque(maxlen=4)
    try:
        for _ in range(6):
            log.record(log.ids(1), "1", [RESULT], 0.001)
        assert log.dropped == 2
        assert [r[0] for r in rows(log)] == [3, 4, 5, 6]  # the oldest went
    finally:
        log.close()


def test_running_totals_match_the_rows_through_retention() -> None:
    """The per-version totals health reads are what a full scan of the kept rows gives."""
    clock = FakeClock(1000.0)
    log = PredictionLog(None, max_predictions=120, max_age_s=300.0, clock=clock, retention_s=0)
    other = {"label": "occupied", "scores": {"empty": 0.2, "occupied": 0.8}}

    def scanned(version: str) -> tuple[int, int, float | None, dict[str, int]]:
        conn = log._conn
        n, failed, confidence = conn.execute(
            "SELECT COUNT(*), TOTAL(failed), AVG(confidence) FROM predictions WHERE version = ?",
            (version,),
        ).fetchone()
        classes = dict(
            conn.execute(
                "SELECT output, COUNT(*) FROM predictions WHERE version = ? AND output IS NOT"
                " NULL GROUP BY output",
                (version,),
            ).fetchall()
        )
        return n, int(failed), confidence, classes

    try:
        for step in range(40):
            version = "1" if step < 25 else "2"
            k = 1 + step % 3
            log.record(log.ids(k), version, [RESULT, other, RESULT][:k], 0.001)
            log.record_failure(version, step % 2, 0.001)
            log.record(log.ids(2), version, [other, RESULT], 0.002)
            clock.advance(10.0)
            log.flush()
            for v in ("1", "2"):
                s = log.summary(v)
                n, failed, confidence, classes = scanned(v)
                assert (s.predictions, s.errors, s.classes) == (n, failed, classes), (step, v)
                if confidence is None:
                    assert s.mean_confidence is None
                else:
                    assert s.mean_confidence == pytest.approx(confidence)
        assert log.count() <= 120 and log.summary("1").predictions < 25 * 5
        assert log.previous("2") == ("1" if log.summary("1").predictions else None)
    finally:
        log.close()
