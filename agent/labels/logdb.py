"""The prediction log's SQLite schema and queries, each on a connection the caller holds.

Layout (version 1)::

    meta(key PK, value)                     log_id (random, per file) and next_seq
    predictions(seq PK, ts, version, output, output_values, confidence, latency_ms, failed,
                sample_ts, label, labelled_ts, correct, abs_error)
    predictions_latency(version, failed, latency_ms)  p50/p99 from the index, without a sort
    predictions_labelled(version, correct, abs_error) partial (labelled rows): accuracy, MAE
    predictions_sample(sample_ts)           partial: the {"timestamp": ...} label form
    versions(version PK, since, active, n, failed, conf_sum, conf_n)
    classes(version, class, n)              PK (version, class)

``seq`` is the prediction id's number (``<log_id>-<seq in hex>``); retention deletes a prefix
of it (oldest first), and ``meta.next_seq`` keeps ids from being reused even when every row
has gone. ``output`` is the class (classification); ``output_values`` a JSON list of the
values (regression, forecast) or of the score (anomaly). ``label`` is the class or a JSON
list of values; ``correct`` (1/0, classification) and ``abs_error`` (mean absolute error over
the outputs, regression and forecast) are computed when the label is set.

``versions`` and ``classes`` hold running totals of the rows the log keeps (counts, failures,
confidence, class counts): the transaction that inserts rows adds to them and the one that
deletes rows for retention subtracts what it deletes, so a health tick reads them in a few
lookups instead of scanning every row of a version. ``since`` and ``active`` are when the
version's current serving period began and when it last served.

A serving period begins each time a version is installed (:func:`begin_period`): the rows of
its earlier periods are renamed ``<version>@<since>`` (archived: kept for the labels, never
reported), so a version rolled back and installed again starts from zero instead of carrying
the figures a coordinator already judged.
"""

from __future__ import annotations

import math
import secrets
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS predictions ("
    " seq INTEGER PRIMARY KEY,"
    " ts REAL NOT NULL,"
    " version TEXT NOT NULL,"
    " output TEXT,"
    " output_values TEXT,"
    " confidence REAL,"
    " latency_ms REAL NOT NULL,"
    " failed INTEGER NOT NULL DEFAULT 0,"
    " sample_ts REAL,"
    " label TEXT,"
    " labelled_ts REAL,"
    " correct INTEGER,"
    " abs_error REAL)",
    "CREATE INDEX IF NOT EXISTS predictions_latency ON predictions(version, failed, latency_ms)",
    "CREATE INDEX IF NOT EXISTS predictions_labelled ON predictions(version, correct, abs_error)"
    " WHERE label IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS predictions_sample ON predictions(sample_ts)"
    " WHERE sample_ts IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS versions ("
    " version TEXT PRIMARY KEY, since REAL NOT NULL, active REAL NOT NULL,"
    " n INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,"
    " conf_sum REAL NOT NULL DEFAULT 0, conf_n INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS classes ("
    " version TEXT NOT NULL, class TEXT NOT NULL, n INTEGER NOT NULL,"
    " PRIMARY KEY (version, class))",
)
SCHEMA_VERSION = 1
KEEP_VERSIONS = 16
INSERT = (
    "INSERT INTO predictions(seq, ts, version, output, output_values, confidence, latency_ms,"
    " failed, sample_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

Row = tuple[int, float, str, str | None, str | None, float | None, float, int, float | None]


@dataclass(frozen=True, slots=True)
class Entry:
    """One logged prediction, as the label path reads it back."""

    seq: int
    ts: float
    version: str
    output: str | None
    output_values: str | None
    failed: bool
    sample_ts: float | None
    label: str | None


@dataclass(frozen=True, slots=True)
class LabelWrite:
    seq: int
    label: str
    correct: int | None
    abs_error: float | None


@dataclass(frozen=True, slots=True)
class Summary:
    """What the log holds about one version (see :mod:`agent.labels.live`)."""

    version: str
    predictions: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    mean_confidence: float | None
    classes: dict[str, int]
    labelled: int
    accuracy: float | None
    mae: float | None
    since: float | None


def create(conn: sqlite3.Connection, skip: int = 0) -> tuple[str, int]:
    """Create the tables if missing; return (log_id, next_seq). ``skip`` leaves that many ids
    to another writer that may still be giving them out (the agent this one takes over from)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql in SCHEMA:
            conn.execute(sql)
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("schema", str(SCHEMA_VERSION)) != str(SCHEMA_VERSION):
            raise sqlite3.DatabaseError(
                f"prediction log schema {meta['schema']} is not {SCHEMA_VERSION}"
            )
        log_id = meta.get("log_id") or secrets.token_hex(4)
        top = conn.execute("SELECT MAX(seq) FROM predictions").fetchone()[0]
        next_seq = max(int(meta.get("next_seq", 1)), (top or 0) + 1) + skip
        conn.executemany(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
            [("schema", str(SCHEMA_VERSION)), ("log_id", log_id), ("next_seq", str(next_seq))],
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return log_id, next_seq


def insert(conn: sqlite3.Connection, rows: Sequence[Row], next_seq: int) -> None:
    """Rows, and their versions' totals, in the caller's transaction."""
    conn.executemany(INSERT, rows)
    totals: dict[str, list[float]] = {}  # version -> [first ts, last ts, n, failed, sum, count]
    classes: dict[tuple[str, str], int] = {}
    for _seq, ts, version, output, _values, confidence, _latency, failed, _sample in rows:
        t = totals.setdefault(version, [ts, ts, 0, 0, 0.0, 0])
        t[0], t[1] = min(t[0], ts), max(t[1], ts)
        t[2] += 1
        t[3] += failed
        if confidence is not None:
            t[4] += confidence
            t[5] += 1
        if output is not None:
            classes[(version, output)] = classes.get((version, output), 0) + 1
    touch(conn, ((v, t[0], t[1]) for v, t in totals.items()))
    conn.executemany(
        "UPDATE versions SET n = n + ?, failed = failed + ?, conf_sum = conf_sum + ?,"
        " conf_n = conf_n + ? WHERE version = ?",
        [(int(t[2]), int(t[3]), t[4], int(t[5]), v) for v, t in totals.items()],
    )
    conn.executemany(
        "INSERT INTO classes(version, class, n) VALUES (?, ?, ?)"
        " ON CONFLICT(version, class) DO UPDATE SET n = n + excluded.n",
        [(v, c, n) for (v, c), n in classes.items()],
    )
    conn.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (str(next_seq),))


def touch(conn: sqlite3.Connection, versions: Iterable[tuple[str, float, float]]) -> None:
    """Record (version, first seen, last seen): ``since`` keeps the earliest, ``active`` the
    latest."""
    conn.executemany(
        "INSERT INTO versions(version, since, active) VALUES (?, ?, ?) ON CONFLICT(version) DO "
        "UPDATE SET since = min(since, excluded.since), active = max(active, excluded.active)",
        list(versions),
    )


def entries(conn: sqlite3.Connection, seqs: Sequence[int]) -> dict[int, Entry]:
    out: dict[int, Entry] = {}
    for chunk in _chunks(seqs):
        sql = (
            "SELECT seq, ts, version, output, output_values, failed, sample_ts, label"
            f" FROM predictions WHERE seq IN ({','.join('?' * len(chunk))})"
        )
        for row in conn.execute(sql, chunk):
            out[int(row[0])] = Entry(
                int(row[0]), row[1], row[2], row[3], row[4], bool(row[5]), row[6], row[7]
            )
    return out


def from_samples(conn: sqlite3.Connection, stamps: Sequence[float]) -> dict[float, list[Entry]]:
    """Successful predictions computed from the stored readings at exactly these times."""
    out: dict[float, list[Entry]] = {}
    for chunk in _chunks(stamps):
        sql = (
            "SELECT seq, ts, version, output, output_values, failed, sample_ts, label"
            f" FROM predictions WHERE sample_ts IN ({','.join('?' * len(chunk))}) AND failed = 0"
            " ORDER BY seq"
        )
        for row in conn.execute(sql, chunk):
            entry = Entry(int(row[0]), row[1], row[2], row[3], row[4], False, row[6], row[7])
            out.setdefault(float(row[6]), []).append(entry)
    return out


def set_labels(conn: sqlite3.Connection, writes: Sequence[LabelWrite], now: float) -> None:
    conn.executemany(
        "UPDATE predictions SET label = ?, labelled_ts = ?, correct = ?, abs_error = ?"
        " WHERE seq = ?",
        [(w.label, now, w.correct, w.abs_error, w.seq) for w in writes],
    )


def summary(conn: sqlite3.Connection, version: str) -> Summary:
    """The version's totals, class counts, labelled figures and latency quantiles: a handful of
    lookups and index walks, none a scan of the version's rows."""
    row = conn.execute(
        "SELECT since, n, failed, conf_sum, conf_n FROM versions WHERE version = ?", (version,)
    ).fetchone()
    since, n, errors, conf_sum, conf_n = row if row is not None else (None, 0, 0, 0.0, 0)
    classes = {
        str(name): int(count)
        for name, count in conn.execute(
            "SELECT class, n FROM classes WHERE version = ? AND n > 0", (version,)
        )
    }
    labelled, accuracy, mae = conn.execute(
        "SELECT COUNT(*), AVG(correct), AVG(abs_error) FROM predictions"
        " WHERE version = ? AND label IS NOT NULL",
        (version,),
    ).fetchone()
    ok = int(n) - int(errors)
    return Summary(
        version=version,
        predictions=int(n),
        errors=int(errors),
        p50_ms=_latency(conn, version, ok, 0.50),
        p99_ms=_latency(conn, version, ok, 0.99),
        mean_confidence=conf_sum / conf_n if conf_n else None,
        classes=classes,
        labelled=int(labelled or 0),
        accuracy=accuracy,
        mae=mae,
        since=since,
    )


def _latency(conn: sqlite3.Connection, version: str, n: int, q: float) -> float | None:
    """The nearest-rank ``q`` quantile of the successful predictions' latency, walking the
    latency index from the nearer end."""
    if n <= 0:
        return None
    rank = max(1, math.ceil(q * n)) - 1  # 0-based, ascending
    order, offset = ("ASC", rank) if rank < n / 2 else ("DESC", n - 1 - rank)
    row = conn.execute(
        "SELECT latency_ms FROM predictions WHERE version = ? AND failed = 0"
        f" ORDER BY latency_ms {order} LIMIT 1 OFFSET ?",
        (version, offset),
    ).fetchone()
    return None if row is None else float(row[0])


ARCHIVED = "@"  # <version>@<since>: an earlier serving period of that version


def begin_period(conn: sqlite3.Connection, version: str, start: float) -> bool:
    """``version`` starts serving at ``start``: archive its rows from before (renamed
    ``<version>@<since>``, their totals rebuilt) so its figures restart. True if it archived."""
    row = conn.execute("SELECT since FROM versions WHERE version = ?", (version,)).fetchone()
    old = conn.execute(
        "SELECT COUNT(*) FROM predictions WHERE version = ? AND ts < ?", (version, start)
    ).fetchone()[0]
    if row is None or not old:
        touch(conn, [(version, start, start)])
        conn.execute("UPDATE versions SET since = ? WHERE version = ?", (start, version))
        return False
    archived = f"{version}{ARCHIVED}{row[0]:.0f}"
    conn.execute(
        "UPDATE predictions SET version = ? WHERE version = ? AND ts < ?",
        (archived, version, start),
    )
    for name in (version, archived):
        conn.execute("DELETE FROM versions WHERE version = ?", (name,))
        conn.execute("DELETE FROM classes WHERE version = ?", (name,))
        conn.execute(
            "INSERT INTO versions(version, since, active, n, failed, conf_sum, conf_n)"
            " SELECT version, MIN(ts), MAX(ts), COUNT(*), SUM(failed),"
            " COALESCE(SUM(confidence), 0), COUNT(confidence)"
            " FROM predictions WHERE version = ? GROUP BY version",
            (name,),
        )
        conn.execute(
            "INSERT INTO classes(version, class, n) SELECT version, output, COUNT(*)"
            " FROM predictions WHERE version = ? AND output IS NOT NULL GROUP BY output",
            (name,),
        )
    touch(conn, [(version, start, start)])
    conn.execute("UPDATE versions SET since = ? WHERE version = ?", (start, version))
    return True


def previous(conn: sqlite3.Connection, serving: str | None) -> str | None:
    """The most recently active version other than ``serving`` that has predictions logged
    (archived periods are not versions)."""
    row = conn.execute(
        "SELECT version FROM versions WHERE version IS NOT ? AND n > 0"
        f" AND instr(version, '{ARCHIVED}') = 0"
        " ORDER BY active DESC LIMIT 1",
        (serving,),
    ).fetchone()
    return None if row is None else str(row[0])


def enforce(conn: sqlite3.Connection, *, max_rows: int, cutoff: float) -> int:
    """Delete the oldest rows beyond ``max_rows`` and the prefix older than ``cutoff``, and
    take them out of their versions' totals."""
    top = conn.execute("SELECT MAX(seq) FROM predictions").fetchone()[0]
    if top is None:
        return 0
    # Rows are written in seq order with the wall clock's ts: the expired ones are a prefix.
    # Walk seq from the oldest to the first young row (NOT INDEXED: rowid order).
    young = conn.execute(
        "SELECT seq FROM predictions NOT INDEXED WHERE ts >= ? ORDER BY seq LIMIT 1", (cutoff,)
    ).fetchone()
    by_age = int(top) + 1 if young is None else int(young[0])
    stop = max(by_age, int(top) - max_rows + 1)
    gone = conn.execute(
        "SELECT version, COUNT(*), SUM(failed), TOTAL(confidence), COUNT(confidence)"
        " FROM predictions WHERE seq < ? GROUP BY version",
        (stop,),
    ).fetchall()
    if not gone:
        return 0
    conn.executemany(
        "UPDATE versions SET n = n - ?, failed = failed - ?, conf_sum = conf_sum - ?,"
        " conf_n = conf_n - ? WHERE version = ?",
        [(n, failed, conf, conf_n, version) for version, n, failed, conf, conf_n in gone],
    )
    conn.executemany(
        "UPDATE classes SET n = n - ? WHERE version = ? AND class = ?",
        [
            (n, version, output)
            for version, output, n in conn.execute(
                "SELECT version, output, COUNT(*) FROM predictions"
                " WHERE seq < ? AND output IS NOT NULL GROUP BY version, output",
                (stop,),
            ).fetchall()
        ],
    )
    cur = conn.execute("DELETE FROM predictions WHERE seq < ?", (stop,))
    conn.execute("DELETE FROM classes WHERE n <= 0")
    conn.execute(
        "DELETE FROM versions WHERE version NOT IN"
        " (SELECT version FROM versions ORDER BY active DESC LIMIT ?)",
        (KEEP_VERSIONS,),
    )
    conn.execute("DELETE FROM classes WHERE version NOT IN (SELECT version FROM versions)")
    return max(cur.rowcount, 0)


def _chunks(values: Sequence[float] | Sequence[int], size: int = 500) -> Iterable[list[float]]:
    items = list(values)
    for i in range(0, len(items), size):
        yield items[i : i + size]
