"""An in-memory :class:`Store` with the SQLite store's behaviour, for tests of its callers.

Rows are validated and packed by the same codec and read by the same decoder and windowing, so
shapes, dtypes, the missing-feature policy and retention order match :class:`SqliteStore`.
``max_bytes`` is enforced against an estimate (row payload plus a fixed overhead), since there
is no file. Not durable, obviously.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from agent.errors import StoreError
from agent.store.base import Dataset, FloatArray, SampleLabel, Store, StoreStats
from agent.store.clocksteps import StepLog, elapsed_clock
from agent.store.codec import EncodedRow, encode_batch
from agent.store.frames import (
    build_dataset,
    check_count,
    check_dataset_args,
    check_features,
    scan_rows,
)
from agent.store.labelling import check_labels, check_stamps, check_tolerance, relabel
from agent.store.layouts import Layout, decode
from agent.store.options import StoreSettings
from agent.types import Sample

ROW_OVERHEAD = 32


def _cost(row: EncodedRow) -> int:
    return ROW_OVERHEAD + len(row.data) + len(row.label or "")


class MemoryStore(Store):
    """:class:`Store` in a deque; ``options.path`` is ignored, ``clock`` drives age retention.

    ``monotonic`` tells clock steps from time passing, as in :class:`SqliteStore`.
    """

    def __init__(
        self,
        options: StoreSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self._options = options or StoreSettings(path=Path(":memory:"))
        self._clock = clock
        self._steps = StepLog(clock, elapsed_clock(clock, monotonic))
        self._first_id = 1  # id of rows[0]; ids count appends, as SQLite's rowids do
        self._lock = threading.Lock()
        self._rows: deque[EncodedRow] = deque()
        self._bytes = 0
        self._layouts: dict[Layout, int] = {}
        self._closed = False
        self._last_check = -math.inf

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("memory store: used after close")

    def append_many(self, samples: Iterable[Sample]) -> int:
        encoded = encode_batch(list(samples))
        with self._lock:
            self._check_open()
            self._notice_step()  # before the insert: these rows are on the new line
            for row in encoded:
                self._layouts.setdefault(row.layout, len(self._layouts) + 1)
                self._rows.append(row)
                self._bytes += _cost(row)
            now = self._clock()
            if not 0 <= now - self._last_check < self._options.retention_interval_s:
                self._enforce_locked(now)  # (a clock that stepped back counts as due)
        return len(encoded)

    def _enforce_locked(self, now: float) -> int:
        opts, rows, before = self._options, self._rows, len(self._rows)
        self._notice_step()
        if opts.max_age_s is not None:
            runs = self._steps.cutoffs(now, opts.max_age_s, self._first_id if rows else None)
            for last_id, cutoff in runs:
                while rows and (last_id is None or self._first_id <= last_id):
                    if rows[0].ts >= cutoff:
                        break
                    self._pop()
                if rows and (last_id is None or self._first_id <= last_id):
                    break  # a young row: the prefix ends here
        if opts.max_rows is not None:
            while len(rows) > opts.max_rows:
                self._pop()
        if opts.max_bytes is not None:
            while rows and self._bytes > opts.max_bytes:
                self._pop()
        self._last_check = now
        return before - len(rows)

    def _notice_step(self) -> None:
        step = self._steps.check()
        if step is not None:
            self._steps.record(step, self._first_id + len(self._rows) - 1 if self._rows else None)

    def _pop(self) -> None:
        self._bytes -= _cost(self._rows.popleft())
        self._first_id += 1

    def enforce_retention(self) -> int:
        with self._lock:
            self._check_open()
            return self._enforce_locked(self._clock())

    def _select(
        self, names: tuple[str, ...], since: float | None
    ) -> tuple[list[EncodedRow], dict[int, list[int]]]:
        """Rows carrying every feature, sorted by (ts, insertion), and their decode columns."""
        wanted = set(names)
        columns = {
            lid: [layout.index(n) for n in names]
            for layout, lid in self._layouts.items()
            if wanted.issubset(layout)
        }
        keep = [
            (row.ts, i, row)
            for i, row in enumerate(self._rows)
            if wanted.issubset(row.layout) and (since is None or row.ts >= since)
        ]
        keep.sort(key=lambda item: (item[0], item[1]))
        return [row for _ts, _i, row in keep], columns

    def _matrix(
        self, rows: Sequence[EncodedRow], columns: dict[int, list[int]], width: int
    ) -> FloatArray:
        return decode(
            [self._layouts[r.layout] for r in rows], [r.data for r in rows], columns, width
        )

    def dataset(
        self,
        features: Sequence[str],
        *,
        window: int | None = None,
        stride: int = 1,
        horizon: int | None = None,
        labels: bool = False,
        since: float | None = None,
        limit: int | None = None,
        max_gap_s: float | None = None,
    ) -> Dataset:
        names = check_dataset_args(
            features, window, stride, horizon, since=since, limit=limit, max_gap_s=max_gap_s
        )
        with self._lock:
            self._check_open()
            rows, columns = self._select(names, since)
            if limit is not None:
                rows = rows[-limit:]
            matrix = self._matrix(rows, columns, len(names))
        return build_dataset(
            names,
            np.array([r.ts for r in rows], dtype=np.float64),
            matrix,
            [r.label for r in rows] if labels else None,
            window=window,
            stride=stride,
            horizon=horizon,
            max_gap_s=max_gap_s,
        )

    def latest_window_at(
        self, features: Sequence[str], window: int
    ) -> tuple[FloatArray, float] | None:
        names = check_features(features)
        check_count("window", window, allow_none=False)
        with self._lock:
            self._check_open()
            newest = sorted(enumerate(self._rows), key=lambda item: (item[1].ts, item[0]))
            recent = [row for _i, row in newest[-scan_rows(window) :]]
            wanted = set(names)
            rows = [row for row in recent if wanted.issubset(row.layout)]
            columns = {
                self._layouts[row.layout]: [row.layout.index(n) for n in names] for row in rows
            }
            matrix = self._matrix(rows, columns, len(names))
        complete = np.isfinite(matrix).all(axis=1)
        if int(complete.sum()) < window:
            return None
        newest_ts = rows[int(np.flatnonzero(complete)[-1])].ts
        return np.ascontiguousarray(matrix[complete][-window:]), newest_ts

    def match_samples(self, stamps: Sequence[float], *, tolerance_s: float) -> list[float | None]:
        check_tolerance(tolerance_s)
        stamps = check_stamps(stamps)
        with self._lock:
            self._check_open()
            found: list[float | None] = []
            for ts in stamps:
                near = [r.ts for r in self._rows if ts - tolerance_s <= r.ts <= ts]
                found.append(max(near, default=None))
            return found

    def label_samples(self, labels: Sequence[SampleLabel]) -> int:
        batch = check_labels(labels)
        with self._lock:
            self._check_open()
            changes: dict[int, EncodedRow] = {}
            labelled = 0
            for item in batch:  # encode all first: a bad value changes nothing
                index = self._index_at(item.ts)
                if index is not None:
                    row = changes.get(index, self._rows[index])
                    changes[index] = relabel(item, row.layout, row.data, row.label)
                    labelled += 1
            for index, row in changes.items():
                self._bytes += _cost(row) - _cost(self._rows[index])
                self._layouts.setdefault(row.layout, len(self._layouts) + 1)
                self._rows[index] = row
            return labelled

    def _index_at(self, ts: float) -> int | None:
        """Index of the newest written row stored at exactly ``ts``."""
        for index in range(len(self._rows) - 1, -1, -1):
            if self._rows[index].ts == ts:
                return index
        return None

    def stats(self, *, per_feature: bool = False) -> StoreStats:
        with self._lock:
            self._check_open()
            counts: dict[str, int] | None = None
            if per_feature:
                counts = {}
                for row in self._rows:
                    for name in row.layout:
                        counts[name] = counts.get(name, 0) + 1
            stamps = [row.ts for row in self._rows]
            return StoreStats(
                rows=len(self._rows),
                bytes=self._bytes,
                oldest_ts=min(stamps, default=None),
                newest_ts=max(stamps, default=None),
                feature_counts=counts,
            )

    def features(self) -> frozenset[str]:
        with self._lock:
            self._check_open()
            return frozenset(n for layout in self._layouts for n in layout)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._rows.clear()
