"""The agent's local store of sensor samples.

    Store (base.py)            the interface callers use
    ├── SqliteStore (sqlite.py) the board's store: WAL SQLite, bounded, crash-safe
    └── MemoryStore (memory.py) same behaviour in a list, for tests of callers

``open_store(options)`` builds the SQLite store; readers return numpy float32 arrays.
"""

from __future__ import annotations

from agent.store.base import Dataset, Store, StoreStats
from agent.store.memory import MemoryStore
from agent.store.options import StoreSettings
from agent.store.sqlite import SqliteStore

__all__ = [
    "Dataset",
    "MemoryStore",
    "SqliteStore",
    "Store",
    "StoreSettings",
    "StoreStats",
    "open_store",
]


def open_store(options: StoreSettings) -> SqliteStore:
    """Open (creating or migrating) the SQLite store described by ``options``."""
    return SqliteStore(options)
