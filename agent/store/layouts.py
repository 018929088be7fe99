"""Row encoding: a sample's values as one float32 blob plus a *layout* id.

A layout is the sorted tuple of feature names a row carries; the ``layouts`` table maps it to a
small integer, and the row's ``data`` blob holds the values in that order as little-endian
float32. A sampler produces the same feature set tick after tick, so a store holds a handful
of layouts, and reading N rows of one layout is one ``b"".join`` and one ``np.frombuffer``.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from agent.store.base import FloatArray

Layout = tuple[str, ...]


class LayoutCache:
    """Layout id <-> names, mirrored from the ``layouts`` table (append-only, so cache-safe).

    Shared by a store's connections; ``refresh`` reads only ids above the highest one known, so
    calling it on every read is one indexed no-op query.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[int, Layout] = {}
        self._by_names: dict[Layout, int] = {}
        self._covering: dict[tuple[str, ...], dict[int, list[int]]] = {}
        self._max_id = 0
        self._refreshed = -math.inf

    def refresh(self, conn: sqlite3.Connection, *, max_age_s: float = 0.0) -> None:
        """Load layouts added (by any process) since the last refresh.

        With ``max_age_s`` the query is skipped if the last refresh is that recent (the hot
        path: this process's own writer records its layouts directly).
        """
        now = time.monotonic()
        if now - self._refreshed < max_age_s:
            return
        rows = conn.execute(
            "SELECT id, names FROM layouts WHERE id > ? ORDER BY id", (self._max_id,)
        ).fetchall()
        self._refreshed = now
        if rows:
            self.add((int(i), tuple(json.loads(names))) for i, names in rows)

    def add(self, items: Iterable[tuple[int, Layout]]) -> None:
        """Record committed layouts (never call this before the defining commit)."""
        with self._lock:
            for layout_id, names in items:
                self._by_id[layout_id] = names
                self._by_names[names] = layout_id
                self._max_id = max(self._max_id, layout_id)
                self._covering.clear()

    def id_of(self, names: Layout) -> int | None:
        return self._by_names.get(names)

    def names(self) -> frozenset[str]:
        with self._lock:
            return frozenset(n for names in self._by_id.values() for n in names)

    def covering(self, features: tuple[str, ...]) -> dict[int, list[int]]:
        """Layouts carrying every feature -> column of each requested feature in the blob.

        Memoised per feature tuple until a layout is added; callers must not mutate it.
        """
        with self._lock:
            found = self._covering.get(features)
            if found is None:
                wanted = set(features)
                found = {
                    layout_id: [names.index(f) for f in features]
                    for layout_id, names in self._by_id.items()
                    if wanted.issubset(names)
                }
                self._covering[features] = found
            return found

    def layout(self, layout_id: int) -> Layout:
        return self._by_id[layout_id]


def define(conn: sqlite3.Connection, names: Layout) -> int:
    """Insert a layout inside the caller's transaction and return its id."""
    text = json.dumps(list(names), ensure_ascii=False, separators=(",", ":"))
    conn.execute("INSERT INTO layouts(names) VALUES (?) ON CONFLICT(names) DO NOTHING", (text,))
    row = conn.execute("SELECT id FROM layouts WHERE names = ?", (text,)).fetchone()
    return int(row[0])


def decode(
    layout_ids: Sequence[int], blobs: Sequence[bytes], columns: Mapping[int, list[int]], width: int
) -> FloatArray:
    """Rows of mixed layouts -> ``(n, width)`` float32, columns chosen per layout.

    Rows whose layout is not in ``columns`` stay NaN (they lack a requested feature).
    """
    n = len(blobs)
    if n and layout_ids[0] in columns and layout_ids.count(layout_ids[0]) == n:
        # The usual case (one sensor set throughout): one join, one frombuffer, one gather.
        block = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(n, -1)
        return block[:, columns[layout_ids[0]]]
    out = np.full((n, width), np.nan, dtype=np.float32)
    if n == 0:
        return out
    ids = np.fromiter(layout_ids, dtype=np.int64, count=n)
    for layout_id, cols in columns.items():
        rows = np.flatnonzero(ids == layout_id)
        if rows.size == 0:
            continue
        joined = b"".join(blobs if rows.size == n else [blobs[i] for i in rows.tolist()])
        block = np.frombuffer(joined, dtype="<f4").reshape(rows.size, -1)
        out[rows] = block[:, cols]
    return out
