"""A bounded FIFO of messages waiting for the broker: drop-oldest when full, and count it.

One interface, two implementations (like Flower's linkstate), one shared test suite::

    outbox = SqliteOutbox(path, max_items=1000)   # survives an agent restart
    outbox = MemoryOutbox(max_items=1000)          # tests, or no writable disk
    outbox.put(topic, payload)                     # drops the oldest when full
    item = outbox.peek()                           # oldest first
    ...publish, wait for PUBACK...
    outbox.ack(item.id)                            # only now is it gone

``dropped`` is cumulative over the outbox's life (persisted by the SQLite one).
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from agent.errors import AgentError
from agent.health.schema import Outbox as OutboxStats


class OutboxError(AgentError):
    """The outbox's database could not be opened or written."""


@dataclass(frozen=True)
class Queued:
    id: int
    topic: str
    payload: str


class Outbox(ABC):
    """Bounded FIFO of (topic, payload); thread-safe."""

    def __init__(self, max_items: int) -> None:
        if max_items < 1:
            raise ValueError(f"expected max_items >= 1. Received: max_items={max_items}")
        self.max_items = max_items
        self._lock = threading.Lock()

    @abstractmethod
    def put(self, topic: str, payload: str) -> int:
        """Append; returns how many old messages were dropped to make room (0 or more)."""

    @abstractmethod
    def peek(self) -> Queued | None:
        """The oldest message, or None when empty; it stays queued until ``ack``."""

    @abstractmethod
    def ack(self, item_id: int) -> None:
        """Forget a delivered message (a no-op when it was already dropped)."""

    @abstractmethod
    def stats(self) -> OutboxStats:
        """``queued`` now and ``dropped`` so far."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release resources."""


class MemoryOutbox(Outbox):
    def __init__(self, max_items: int = 1000) -> None:
        super().__init__(max_items)
        self._items: OrderedDict[int, Queued] = OrderedDict()
        self._next = 1
        self._dropped = 0

    def put(self, topic: str, payload: str) -> int:
        with self._lock:
            dropped = 0
            while len(self._items) >= self.max_items:
                self._items.popitem(last=False)
                dropped += 1
            self._dropped += dropped
            self._items[self._next] = Queued(self._next, topic, payload)
            self._next += 1
            return dropped

    def peek(self) -> Queued | None:
        with self._lock:
            return next(iter(self._items.values()), None)

    def ack(self, item_id: int) -> None:
        with self._lock:
            self._items.pop(item_id, None)

    def stats(self) -> OutboxStats:
        with self._lock:
            return OutboxStats(queued=len(self._items), dropped=self._dropped)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,
                                   payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('dropped', 0);
"""
_INSERT = "INSERT INTO outbox (topic, payload) VALUES (?, ?)"
_DROP_OLDEST = "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)"
_COUNT_DROPPED = "UPDATE counters SET value = value + ? WHERE name = 'dropped'"


class SqliteOutbox(Outbox):
    """The outbox in one SQLite file (WAL); kept across restarts, sent on the next connect."""

    def __init__(self, path: Path, max_items: int = 1000) -> None:
        super().__init__(max_items)
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"cannot open the health outbox {path}: {exc}") from exc

    def _write(self, sql: str, args: tuple[object, ...]) -> None:
        try:
            self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise OutboxError(f"health outbox {self.path}: {exc}") from exc

    def put(self, topic: str, payload: str) -> int:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                excess = self._make_room()
                self._db.execute(_INSERT, (topic, payload))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise OutboxError(f"health outbox {self.path}: {exc}") from exc
            return excess

    def _make_room(self) -> int:
        (count,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        excess = max(0, int(count) - self.max_items + 1)
        if excess:
            self._db.execute(_DROP_OLDEST, (excess,))
            self._db.execute(_COUNT_DROPPED, (excess,))
        return excess

    def peek(self) -> Queued | None:
        with self._lock:
            try:
                row = self._db.execute(
                    "SELECT id, topic, payload FROM outbox ORDER BY id LIMIT 1"
                ).fetchone()
            except sqlite3.Error as exc:
                raise OutboxError(f"health outbox {self.path}: {exc}") from exc
        return None if row is None else Queued(int(row[0]), str(row[1]), str(row[2]))

    def ack(self, item_id: int) -> None:
        with self._lock:
            self._write("DELETE FROM outbox WHERE id = ?", (item_id,))

    def stats(self) -> OutboxStats:
        with self._lock:
            try:
                (queued,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
                (dropped,) = self._db.execute(
                    "SELECT value FROM counters WHERE name = 'dropped'"
                ).fetchone()
            except sqlite3.Error as exc:
                raise OutboxError(f"health outbox {self.path}: {exc}") from exc
        return OutboxStats(queued=int(queued), dropped=int(dropped))

    def close(self) -> None:
        with self._lock:
            self._db.close()
