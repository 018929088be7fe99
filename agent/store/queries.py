"""The SQLite store's read queries, each on a connection the caller holds.

Every query walks the ``samples_ts`` index (no sort, no full scan) and filters on the layouts
that carry all requested features (see :mod:`.layouts`).
"""

from __future__ import annotations

import sqlite3

import numpy as np
import numpy.typing as npt

from agent.store.base import FloatArray
from agent.store.frames import scan_rows
from agent.store.layouts import LayoutCache, decode

FETCH = 65536

Columns = dict[int, list[int]]


def _marks(columns: Columns) -> str:
    return ",".join("?" * len(columns))


def read_rows(
    conn: sqlite3.Connection,
    columns: Columns,
    width: int,
    *,
    since: float | None,
    limit: int | None,
    labels: bool,
) -> tuple[npt.NDArray[np.float64], FloatArray, list[str | None] | None]:
    """(ts, values, labels) of rows of the given layouts, oldest first, fetched in chunks."""
    ts_parts: list[npt.NDArray[np.float64]] = []
    x_parts: list[FloatArray] = []
    label_list: list[str | None] | None = [] if labels else None
    if columns:
        label = "label" if labels else "NULL"
        sql = f"SELECT ts, layout, {label}, data FROM samples WHERE layout IN ({_marks(columns)})"
        params: list[object] = list(columns)
        if since is not None:
            sql += " AND ts >= ?"
            params.append(since)
        if limit is not None:
            sql += " ORDER BY ts DESC, id DESC LIMIT ?"
            params.append(limit)
        else:
            sql += " ORDER BY ts, id"
        cur = conn.execute(sql, params)
        while chunk := cur.fetchmany(FETCH):
            ts_col, layout_col, label_col, data_col = zip(*chunk, strict=True)
            ts_parts.append(np.array(ts_col, dtype=np.float64))
            x_parts.append(decode(layout_col, data_col, columns, width))
            if label_list is not None:
                label_list.extend(label_col)
    ts = np.concatenate(ts_parts) if ts_parts else np.empty(0, dtype=np.float64)
    matrix = np.concatenate(x_parts) if x_parts else np.empty((0, width), dtype=np.float32)
    if limit is not None:
        ts, matrix = ts[::-1], matrix[::-1]
        if label_list is not None:
            label_list.reverse()
    return ts, matrix, label_list


def read_latest(
    conn: sqlite3.Connection, columns: Columns, width: int, window: int
) -> tuple[FloatArray, float] | None:
    """The newest ``window`` complete rows among the newest ``scan_rows(window)`` rows, and the
    ``ts`` of the newest of them."""
    if not columns:
        return None
    # The scan bound (ts of the scan-th newest row) is a subquery: one round trip, and the
    # main query walks the ts index from the newest row down to that bound at most.
    sql = (
        f"SELECT ts, layout, data FROM samples WHERE layout IN ({_marks(columns)})"
        " AND ts >= COALESCE("
        "(SELECT ts FROM samples ORDER BY ts DESC, id DESC LIMIT 1 OFFSET ?), -1e308)"
        " ORDER BY ts DESC, id DESC LIMIT ?"
    )
    scan = scan_rows(window)
    fetch = window
    while True:
        rows = conn.execute(sql, [*columns, scan - 1, fetch]).fetchall()
        if len(rows) < window:
            return None
        ts_col, layout_col, data_col = zip(*rows, strict=True)
        matrix = decode(layout_col, data_col, columns, width)
        complete = np.isfinite(matrix).all(axis=1)
        matrix = matrix[complete]
        if matrix.shape[0] >= window:
            newest = float(ts_col[int(np.argmax(complete))])  # rows are newest first
            return np.ascontiguousarray(matrix[window - 1 :: -1]), newest
        if len(rows) < fetch or fetch >= scan:
            return None
        fetch = scan  # some rows held NaN: take every candidate within the scan bound


def match_at_or_before(conn: sqlite3.Connection, ts: float, tolerance_s: float) -> float | None:
    """The ``ts`` of the newest row in ``[ts - tolerance_s, ts]``: one walk down the ts index."""
    row = conn.execute(
        "SELECT ts FROM samples WHERE ts <= ? AND ts >= ? ORDER BY ts DESC LIMIT 1",
        (ts, ts - tolerance_s),
    ).fetchone()
    return None if row is None else float(row[0])


def row_at(conn: sqlite3.Connection, ts: float) -> tuple[int, int, str | None, bytes] | None:
    """(id, layout, label, data) of the newest written row stored at exactly ``ts``."""
    row = conn.execute(
        "SELECT id, layout, label, data FROM samples WHERE ts = ? ORDER BY id DESC LIMIT 1", (ts,)
    ).fetchone()
    return None if row is None else (int(row[0]), int(row[1]), row[2], bytes(row[3]))


def time_span(conn: sqlite3.Connection) -> tuple[float | None, float | None]:
    """(oldest ts, newest ts): two index lookups."""
    oldest, newest = conn.execute(
        "SELECT (SELECT MIN(ts) FROM samples), (SELECT MAX(ts) FROM samples)"
    ).fetchone()
    return oldest, newest


def feature_counts(conn: sqlite3.Connection, layouts: LayoutCache) -> dict[str, int]:
    """Rows carrying each feature. Scans the table: not for the hot path."""
    counts: dict[str, int] = {}
    for layout_id, n in conn.execute("SELECT layout, COUNT(*) FROM samples GROUP BY layout"):
        for name in layouts.layout(int(layout_id)):
            counts[name] = counts.get(name, 0) + int(n)
    return counts
