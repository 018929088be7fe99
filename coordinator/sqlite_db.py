"""The coordinator's SQLite files: one connection behind a lock, WAL, immediate transactions.

The device registry, the rollout store and the command store open their files the same way::

    db = Database(path, SCHEMA, what="rollout store", error=RolloutError, version=1)
    with db.transaction() as conn:      # BEGIN IMMEDIATE ... COMMIT (ROLLBACK on an exception)
        conn.execute(...)
    rows = db.query("SELECT ...", args)

Every ``sqlite3`` or file-system error becomes ``error(...)`` naming ``what`` and the path.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class Database:
    def __init__(
        self,
        path: Path | str,
        schema: str,
        *,
        what: str,
        error: Callable[[str], Exception],
        version: int | None = None,
        reentrant: bool = False,
    ) -> None:
        """``version``: refuse a file written by a newer schema (``PRAGMA user_version``);
        ``reentrant``: reads inside a transaction see its writes (an ``RLock``)."""
        self.path = Path(path)
        self.what = what
        self.error = error
        self.lock: threading.Lock | threading.RLock = (
            threading.RLock() if reentrant else threading.Lock()
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=5000")
            if version is not None:
                found = int(self.db.execute("PRAGMA user_version").fetchone()[0])
                if found > version:
                    raise error(
                        f"{what} {self.path}: expected schema version <= {version} "
                        f"(written by a newer Orchard). Received: user_version={found}"
                    )
            self.db.executescript(schema)
            if version is not None:
                self.db.execute(f"PRAGMA user_version={version}")
        except (sqlite3.Error, OSError) as exc:
            raise error(f"cannot open the {what} {self.path}: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: all of it is stored, or none of it."""
        with self.lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    yield self.db
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self.error(f"{self.what} {self.path}: {exc}") from exc

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            try:
                return self.db.execute(sql, tuple(args)).fetchall()
            except sqlite3.Error as exc:
                raise self.error(f"{self.what} {self.path}: {exc}") from exc

    def close(self) -> None:
        with self.lock:
            self.db.close()
