"""Retention of the SQLite store: oldest rows first, by count, age and bytes.

Every check is O(log n) (rowid and page-count lookups); deleting costs what it deletes, in
chunks of :data:`CHUNK` rows per transaction so the sampler is never blocked for long. Rows go
in insertion order (a prefix of ids), which keeps ids contiguous (see :mod:`.schema`); by age,
the prefix whose ``ts`` is older than ``now - max_age_s`` goes (rows written before a step of
the wall clock are judged on their own time line, see :mod:`.clocksteps`).

Bytes are the database file (``page_count * page_size``) plus the WAL file. Deleted pages stay
in the freelist for new rows to reuse (no write amplification in the steady state); only when
the file itself exceeds its share of ``max_bytes`` is it shrunk with ``incremental_vacuum``, and
the WAL is truncated by a non-blocking checkpoint.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.store.clocksteps import StepLog
from agent.store.schema import PAGE_SIZE

logger = logging.getLogger(__name__)

CHUNK = 5000
#: After a byte-driven cleanup the used pages sit at most at this share of the file budget.
LOW_WATER = 0.9


@dataclass(frozen=True, slots=True)
class Limits:
    max_rows: int | None
    max_age_s: float | None
    max_bytes: int | None
    wal_bytes: int
    busy_timeout_ms: int


def id_span(conn: sqlite3.Connection) -> tuple[int, int] | None:
    """(first id, last id), or None when empty; each bound is one rowid lookup."""
    lo, hi = conn.execute(
        "SELECT (SELECT MIN(id) FROM samples), (SELECT MAX(id) FROM samples)"
    ).fetchone()
    return None if lo is None else (int(lo), int(hi))


def row_count(conn: sqlite3.Connection) -> int:
    span = id_span(conn)
    return 0 if span is None else span[1] - span[0] + 1


def sizes(conn: sqlite3.Connection, path: Path) -> tuple[int, int, int]:
    """(page_count, freelist_count, WAL file bytes)."""
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    try:
        wal = os.path.getsize(f"{path}-wal")
    except FileNotFoundError:
        wal = 0
    return pages, free, wal


def checkpoint(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """Copy the WAL into the database and truncate it, without waiting for readers."""
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")


def delete_before(conn: sqlite3.Connection, stop_id: int) -> int:
    """Delete every row with ``id < stop_id``, chunk by chunk; return the count."""
    deleted = 0
    while True:
        span = id_span(conn)
        if span is None or span[0] >= stop_id:
            return deleted
        upto = min(stop_id, span[0] + CHUNK)
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute("DELETE FROM samples WHERE id < ?", (upto,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        deleted += max(cur.rowcount, 0)


def by_rows(conn: sqlite3.Connection, max_rows: int) -> int:
    span = id_span(conn)
    if span is None or span[1] - span[0] + 1 <= max_rows:
        return 0
    return delete_before(conn, span[1] - max_rows + 1)


def by_age(conn: sqlite3.Connection, runs: Sequence[tuple[int | None, float]]) -> int:
    """Delete the expired prefix of ids. ``runs`` are ``(last id or None, cutoff)`` in id order.

    Each run of ids has its own cutoff (rows written before a clock step sit on the old time
    line, see :mod:`.clocksteps`); deletion stops at the first row younger than its cutoff.
    """
    deleted = 0
    for last_id, cutoff in runs:
        first = conn.execute("SELECT id, ts FROM samples ORDER BY id LIMIT 1").fetchone()
        if first is None:
            return deleted
        if last_id is not None and first[0] > last_id:
            continue  # this run is gone already
        if first[1] >= cutoff:
            return deleted
        # Walk ids from the oldest (NOT INDEXED: rowid order, cost ~ the expired prefix).
        sql = "SELECT id FROM samples NOT INDEXED WHERE ts >= ?"
        args: tuple[float, ...] = (cutoff,)
        if last_id is not None:
            sql, args = sql + " AND id <= ?", (cutoff, last_id)
        row = conn.execute(sql + " ORDER BY id LIMIT 1", args).fetchone()
        if row is not None:
            return deleted + delete_before(conn, int(row[0]))
        if last_id is None:
            span = id_span(conn)
            return deleted + (0 if span is None else delete_before(conn, span[1] + 1))
        deleted += delete_before(conn, last_id + 1)
    return deleted


def by_bytes(conn: sqlite3.Connection, path: Path, limits: Limits) -> int:
    assert limits.max_bytes is not None
    file_budget = max(1, (limits.max_bytes - limits.wal_bytes) // PAGE_SIZE)
    pages, free, wal = sizes(conn, path)
    if pages * PAGE_SIZE + wal <= limits.max_bytes and pages <= file_budget:
        return 0
    checkpoint(conn, limits.busy_timeout_ms)
    deleted = 0
    target = int(file_budget * LOW_WATER)
    for _ in range(8):
        pages, free, _wal = sizes(conn, path)
        used = pages - free
        rows = row_count(conn)
        if used <= target or rows == 0:
            break
        drop = max(1, rows - math.floor(rows * target / used))
        span = id_span(conn)
        assert span is not None
        deleted += delete_before(conn, span[0] + drop)
    pages, free, _wal = sizes(conn, path)
    if pages > file_budget and free:
        conn.execute(f"PRAGMA incremental_vacuum({min(free, pages - file_budget)})").fetchall()
    checkpoint(conn, limits.busy_timeout_ms)
    return deleted


def enforce(
    conn: sqlite3.Connection, path: Path, limits: Limits, now: float, steps: StepLog | None = None
) -> int:
    """Apply every configured bound; return rows deleted. Runs on the writer connection.

    ``steps`` (the clock steps seen while writing) gives rows written before a step their own
    age cutoff; without it every row is judged against ``now``.
    """
    deleted = 0
    if limits.max_age_s is not None:
        runs: list[tuple[int | None, float]] = [(None, now - limits.max_age_s)]
        if steps is not None:
            span = id_span(conn)
            runs = steps.cutoffs(now, limits.max_age_s, None if span is None else span[0])
        deleted += by_age(conn, runs)
    if limits.max_rows is not None:
        deleted += by_rows(conn, limits.max_rows)
    if limits.max_bytes is not None:
        deleted += by_bytes(conn, path, limits)
    if deleted:
        logger.info("store: retention deleted %d oldest rows", deleted)
    return deleted
