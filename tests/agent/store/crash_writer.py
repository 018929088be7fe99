"""Child process of ``test_crash``: append batches until killed, reporting every commit.

Usage: ``python crash_writer.py DB_PATH BATCH``. Prints ``ready`` once open, then after each
committed batch the last sequence number in it. Resumes after the newest stored row, so the
table holds 0..N-1 without holes whatever moment the previous writer died at.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from agent.store import SqliteStore, StoreSettings
from agent.types import Sample


def frequent_checkpoints(conn: sqlite3.Connection) -> None:
    """Checkpoint every few pages so kills also land inside checkpoints."""
    conn.execute("PRAGMA wal_autocheckpoint = 8")


def main() -> None:
    path, batch = Path(sys.argv[1]), int(sys.argv[2])
    store = SqliteStore(StoreSettings(path=path), on_connect=frequent_checkpoints)
    newest = store.stats().newest_ts
    seq = 0 if newest is None else int(newest) + 1
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        store.append_many(
            Sample(ts=float(s), values={"seq": float(s), "twice": 2.0 * s}, label=f"L{s % 3}")
            for s in range(seq, seq + batch)
        )
        seq += batch
        sys.stdout.write(f"{seq - 1}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
