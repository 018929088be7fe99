"""The store under SIGKILL during retention and a disk that fills up, down to the whole agent.

tests/agent/store/test_crash.py kills a writer without retention; test_sqlite.py fills the
database with ``max_page_count``. These add kills while retention deletes, vacuums and
checkpoints, a kernel-enforced file size limit (``EFBIG``), a really full filesystem
(``ENOSPC``) and the agent process living on a full store.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from agent.errors import StoreError
from agent.sensors import Sampler, build_sensors
from agent.store import SqliteStore, StoreSettings
from tests.faults.store_scenarios import (
    enospc_available,
    run_agent_disk_full,
    run_store_disk_full,
    run_store_enospc,
    run_store_kills,
)


@pytest.mark.slow
def test_sigkill_during_retention_never_loses_or_corrupts(tmp_path: Path) -> None:
    figures = run_store_kills(tmp_path, kills=8)
    assert figures["last_committed"] > 0


@pytest.mark.slow
def test_a_file_size_limit_is_a_clear_disk_full_error_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    figures = run_store_disk_full(tmp_path, cycles=2)
    assert figures["outages"] == 3 and figures["failed_appends"] == 18
    assert "RLIMIT_FSIZE" in figures["message"] and "committed rows are kept" in figures["message"]


@pytest.mark.slow
def test_a_full_filesystem_is_a_clear_disk_full_error(tmp_path: Path) -> None:
    if not enospc_available():
        pytest.skip("cannot mount a tmpfs in a user namespace here (unshare -rm refused)")
    figures = run_store_enospc(tmp_path)
    assert figures["rows"] > 0


@pytest.mark.slow
def test_the_agent_keeps_sampling_and_serving_on_a_full_store(tmp_path: Path) -> None:
    figures = run_agent_disk_full(tmp_path, seconds=2.0)
    assert figures["log_lines"] == 1 and figures["rows_kept"] > 0


def test_the_sampler_reports_a_full_store_once_per_outage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite's own SQLITE_FULL (``max_page_count``) under the real sampler and store."""
    conns: list[sqlite3.Connection] = []
    store = SqliteStore(StoreSettings(path=tmp_path / "s.db"), on_connect=conns.append)
    clock = _Ticks()
    sensors = build_sensors({"env": {"driver": "synthetic", "interval_s": 0.001}}, clock=clock)
    sampler = Sampler(sensors, store.append, clock=clock)
    try:
        pages = store.stats().bytes // 4096
        for conn in conns[:2]:
            conn.execute(f"PRAGMA max_page_count = {pages}")
        with caplog.at_level(logging.WARNING, logger="agent.sensors.sampler"):
            for _ in range(5000):
                sampler.poll_once()
                if sampler.sink_errors >= 20:
                    break
            assert sampler.sink_errors >= 20, "the store never filled up"
            full = sampler.sink_errors
            for conn in conns[:2]:
                conn.execute("PRAGMA max_page_count = 1073741823")
            sampler.poll_once()
        kept = store.stats().rows
    finally:
        sampler.stop()
        store.close()
    assert sampler.last_sink_error and "disk full" in sampler.last_sink_error
    assert str(tmp_path / "s.db") in sampler.last_sink_error
    failed = [r for r in caplog.records if "sink failed" in r.getMessage()]
    recovered = [r for r in caplog.records if "sink recovered" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is None  # one clear line, no traceback
    assert len(recovered) == 1 and f"{full} sample(s) dropped" in recovered[0].getMessage()
    assert sampler.samples_emitted == kept  # every sample the store took is there
    check = sqlite3.connect(tmp_path / "s.db")
    try:
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        check.close()


def test_an_io_error_is_called_disk_full_only_when_space_is_short(tmp_path: Path) -> None:
    from agent.store.sqlerrors import describe, no_space

    error = sqlite3.OperationalError("disk I/O error")
    error.sqlite_errorcode = 778  # SQLITE_IOERR_WRITE, as SQLite raises it on EIO or EFBIG
    assert no_space(tmp_path / "s.db") is None  # room on disk, no file size limit here
    message = str(describe(error, tmp_path / "s.db", "append of 1 samples"))
    assert "I/O error on the storage device" in message and "disk full" not in message
    assert isinstance(describe(error, tmp_path / "s.db", "x"), StoreError)


class _Ticks:
    """A fake wall clock that moves 10 ms per reading (only the clock is fake)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 0.01
        return self.now
