"""SqliteStore specifics: files, schema, bytes, errors, threads."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from agent.errors import StoreError
from agent.store import SqliteStore, StoreSettings
from agent.store.schema import SCHEMA_VERSION
from agent.types import Sample
from tests.agent.store.conftest import FakeClock, ramp


def open_store(path: Path, clock: FakeClock | None = None, **limits: object) -> SqliteStore:
    limits.setdefault("retention_interval_s", 0.0)
    return SqliteStore(StoreSettings(path=path, **limits), clock=clock or FakeClock())  # type: ignore[arg-type]


def on_disk_bytes(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def test_reopen_after_close_keeps_rows_and_layouts(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "s.db"
    with open_store(path) as store:
        store.append_many(ramp(20, label="x"))
    assert not Path(f"{path}-wal").exists()  # a clean close folds the WAL in
    with open_store(path) as store:
        assert store.stats().rows == 20
        assert store.features() == {"a", "b"}
        store.append_many(ramp(5, start=20))
        np.testing.assert_array_equal(store.dataset(["a"]).ts, range(25))
        labelled = store.dataset(["a"], labels=True).labels
        assert labelled is not None and labelled.tolist() == ["x"] * 20


def test_reopening_with_tighter_limits_trims_at_once(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with open_store(path) as store:
        store.append_many(ramp(50))
    with open_store(path, max_rows=5) as store:
        assert store.stats().rows == 5
        assert store.stats().oldest_ts == 45.0


def test_file_settings_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with open_store(path, synchronous="FULL"):
        pass
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
        assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == 1
        conn.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 1,))
        conn.commit()
    finally:
        conn.close()
    with pytest.raises(StoreError, match="newer than this agent"):
        open_store(path)


def test_hot_path_queries_use_the_ts_index_without_sorting(tmp_path: Path) -> None:
    with open_store(tmp_path / "s.db") as store:
        store.append_many(ramp(100))
        conn = sqlite3.connect(tmp_path / "s.db")
        try:
            for sql in (
                "SELECT ts FROM samples ORDER BY ts DESC, id DESC LIMIT 1 OFFSET 5",
                "SELECT layout, data FROM samples WHERE layout IN (1) AND ts >= 0"
                " ORDER BY ts DESC, id DESC LIMIT 5",
                "SELECT ts, layout, label, data FROM samples WHERE layout IN (1) ORDER BY ts, id",
            ):
                plan = " ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql))
                assert "samples_ts" in plan and "TEMP B-TREE" not in plan, plan
        finally:
            conn.close()


def test_retention_by_bytes_bounds_database_plus_wal(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    limit = 256 * 1024
    with open_store(path, max_bytes=limit) as store:
        for start in range(0, 30_000, 500):
            store.append_many(ramp(500, start=float(start), label="some-label"))
            assert on_disk_bytes(path) <= limit
        stats = store.stats()
        assert 0 < stats.rows < 30_000 and stats.bytes <= limit
        assert stats.newest_ts == 29_999.0
        assert stats.rows == len(store.dataset(["a"]))  # ids stayed contiguous
        ts = store.dataset(["a"]).ts
        np.testing.assert_array_equal(ts, np.arange(30_000 - len(ts), 30_000))


def test_a_corrupt_file_is_reported_as_such(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not a database" * 500)
    with pytest.raises(StoreError, match=r"not an SQLite database.*s\.db|s\.db.*not an SQLite"):
        open_store(path)


def test_damaged_pages_are_reported_as_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with open_store(path) as store:
        store.append_many(ramp(5000))
    with path.open("r+b") as f:  # scribble over the middle of the file, header intact
        f.seek(path.stat().st_size // 2)
        f.write(b"\xff" * 4 * 4096)
    with pytest.raises(StoreError, match=r"s\.db.*corrupt"), open_store(path) as store:
        store.dataset(["a", "b"])


def test_disk_full_raises_keeps_committed_rows_and_recovers(tmp_path: Path) -> None:
    conns: list[sqlite3.Connection] = []
    path = tmp_path / "s.db"
    store = SqliteStore(StoreSettings(path=path), on_connect=conns.append)
    try:
        store.append_many(ramp(100))
        pages = store.stats().bytes // 4096
        for conn in conns[:2]:  # the writer and the reader; scans use short-lived ones
            conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StoreError, match=r"disk full") as info:
            for start in range(100, 100_000, 1000):
                store.append_many(ramp(1000, start=float(start)))
        assert str(path) in str(info.value)
        committed = store.stats().rows
        assert committed >= 100
        assert len(store.dataset(["a"])) == committed
        for conn in conns[:2]:  # space frees up
            conn.execute("PRAGMA max_page_count = 1073741823")
        store.append_many(ramp(1000, start=1e6))
        assert store.stats().rows == committed + 1000
    finally:
        store.close()
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        check.close()


def test_reader_and_writer_threads_run_concurrently(tmp_path: Path) -> None:
    """The sampler writes while HTTP threads read the latest window and a trainer scans."""
    store = open_store(tmp_path / "s.db", max_rows=3000)
    errors: list[BaseException] = []
    done = threading.Event()
    reads = [0, 0]

    def writer() -> None:
        try:
            for batch in range(200):
                store.append_many(
                    Sample(ts=float(t), values={"a": float(t), "b": 10.0 * t})
                    for t in range(batch * 10, batch * 10 + 10)
                )
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    def hot_reader(slot: int) -> None:
        try:
            while not done.is_set():
                win = store.latest_window(["a", "b"], 16)
                if win is not None:
                    assert win.shape == (16, 2)
                    assert np.all(np.diff(win[:, 0]) == 1)  # contiguous rows, no torn read
                    assert win[-1, 0] % 10 == 9  # batches are atomic
                    np.testing.assert_array_equal(win[:, 1], 10 * win[:, 0])
                store.stats()
                reads[slot] += 1
        except BaseException as exc:
            errors.append(exc)

    def trainer() -> None:
        try:
            while not done.is_set():
                ds = store.dataset(["a", "b"], window=4, limit=500)
                assert ds.x.shape[1:] == (4, 2)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=writer),
        threading.Thread(target=hot_reader, args=(0,)),
        threading.Thread(target=hot_reader, args=(1,)),
        threading.Thread(target=trainer),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    try:
        assert not any(t.is_alive() for t in threads)
        assert not errors, errors
        assert min(reads) > 0
        assert store.stats().rows == 2000
    finally:
        store.close()


def test_dataset_from_a_second_process_style_handle(tmp_path: Path) -> None:
    """A trainer opens its own handle; it sees rows and layouts the agent writes later."""
    path = tmp_path / "s.db"
    with open_store(path) as agent, open_store(path) as trainer:
        assert trainer.features() == frozenset()
        agent.append_many(ramp(10))
        agent.append(Sample(ts=10.0, values={"z": 1.0}))
        assert trainer.features() == {"a", "b", "z"}
        assert trainer.dataset(["a", "b"], window=5).x.shape == (6, 5, 2)
        np.testing.assert_array_equal(trainer.latest(["z"]), [1.0])
    assert os.path.exists(path)
