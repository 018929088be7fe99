"""Schema, migrations and connection settings of the SQLite store.

Layout (version 1)::

    schema_version(version PK, applied_at)      one row per applied migration
    layouts(id PK, names UNIQUE)                sorted feature names as a JSON list
    samples(id PK, ts, layout, label, data)     one row per tick; data = float32 blob
    samples_ts(ts)                              index: time-range reads, newest-first reads

``samples.id`` is the rowid and stays contiguous: SQLite gives a new row ``max(id) + 1`` and
retention only ever deletes a prefix of ids (oldest inserted first), so the row count is
``max(id) - min(id) + 1``, two O(log n) lookups instead of a ``COUNT(*)`` scan.

To change the schema, append a ``(version, statements)`` pair to :data:`MIGRATIONS`; opening a
store applies the missing ones in one transaction and refuses a file newer than the code.
"""

from __future__ import annotations

import logging
import sqlite3

from agent.errors import StoreError

logger = logging.getLogger(__name__)

PAGE_SIZE = 4096
#: Page cache per connection. The hot paths touch the right edge of two B-trees (appends, the
#: newest rows), a handful of pages; a bigger cache fills with every new page as the file grows
#: and reads as RSS growth of the always-on agent (the previous 2 MiB per connection: up to
#: 4 MiB over the first hours at 10 Hz; 128 KiB: at most 256 KiB for writer and reader).
CACHE_KIB = 128

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            "CREATE TABLE layouts (id INTEGER PRIMARY KEY, names TEXT NOT NULL UNIQUE)",
            "CREATE TABLE samples ("
            " id INTEGER PRIMARY KEY,"
            " ts REAL NOT NULL,"
            " layout INTEGER NOT NULL,"
            " label TEXT,"
            " data BLOB NOT NULL)",
            "CREATE INDEX samples_ts ON samples(ts)",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1][0]


def configure(
    conn: sqlite3.Connection, *, synchronous: str, busy_timeout_s: float, wal_bytes: int
) -> None:
    """Per-connection settings. ``page_size``/``auto_vacuum`` only bite on a new, empty file."""
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"store: the filesystem refused WAL journal mode (got {mode!r})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute(f"PRAGMA journal_size_limit = {wal_bytes}")
    conn.execute(f"PRAGMA wal_autocheckpoint = {max(16, wal_bytes // PAGE_SIZE)}")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    conn.execute("PRAGMA mmap_size = 0")  # reads through the page cache, not mapped pages


def migrate(conn: sqlite3.Connection, now: float) -> int:
    """Bring the file to :data:`SCHEMA_VERSION`; return the version found before."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        found = int(
            conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
        )
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"store: database schema version {found} is newer than this agent supports "
                f"({SCHEMA_VERSION}); upgrade the agent or move the file aside"
            )
        for version, statements in MIGRATIONS:
            if version <= found:
                continue
            logger.info("store: applying schema migration %d", version)
            for sql in statements:
                conn.execute(sql)
            conn.execute(
                "INSERT INTO schema_version(version, applied_at) VALUES (?, ?)", (version, now)
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found
