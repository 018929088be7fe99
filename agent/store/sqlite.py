"""The SQLite store: a bounded, crash-safe table of samples on the board's SD card.

Durability: WAL journal with ``synchronous=NORMAL`` by default. A commit appends the
transaction's pages to the WAL and returns without fsync; the WAL is fsynced at checkpoints.

* kill -9 (agent crash, OOM kill, watchdog): nothing committed is lost under either mode. The
  WAL frames are in the kernel's page cache, which outlives the process; the next open replays
  them. The crash test in ``tests/agent/store`` checks exactly this.
* power loss / brown-out: ``NORMAL`` may roll back the last transactions since the previous
  checkpoint (a few seconds of readings) but never corrupts the file; ``FULL`` fsyncs the WAL
  on every commit and keeps them, at one fsync per commit. On an SD card an fsync costs
  milliseconds to tens of milliseconds and extra flash wear, and losing the last seconds of
  sensor history is harmless, so ``NORMAL`` is the default; choose ``FULL`` through
  ``StoreSettings.synchronous`` where every reading matters.

Threads: one writer connection behind a lock (``append_many``, ``label_samples``, retention)
and one reader connection behind another (``latest_window``, ``latest``, ``match_samples``,
``stats``, ``features``). WAL lets the
reader run while a write commits, so the inference hot path never waits for the sampler.
``dataset`` and ``stats(per_feature=True)`` scan, so each opens a private short-lived connection
and never holds the hot-path lock. Connections are opened with ``check_same_thread=False``;
the locks are what serialise use of each one.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from agent.errors import StoreError
from agent.store import queries, retention
from agent.store.base import Dataset, FloatArray, SampleLabel, Store, StoreStats
from agent.store.clocksteps import StepLog, elapsed_clock
from agent.store.codec import encode_batch
from agent.store.frames import build_dataset, check_count, check_dataset_args, check_features
from agent.store.labelling import check_labels, check_stamps, check_tolerance, relabel
from agent.store.layouts import LayoutCache, define
from agent.store.options import StoreSettings
from agent.store.schema import PAGE_SIZE, configure, migrate
from agent.store.sqlerrors import translated
from agent.types import Sample

logger = logging.getLogger(__name__)

WAL_BYTES = 4 * 1024 * 1024
#: How stale the hot path's view of layouts written by *other* processes may be.
LAYOUT_REFRESH_S = 1.0


class SqliteStore(Store):
    """:class:`Store` on one SQLite file. ``clock`` (Unix seconds) drives age retention.

    ``monotonic`` tells steps of ``clock`` from time passing (see :mod:`.clocksteps`); it
    defaults to ``time.monotonic`` with the real clock, and to ``clock`` itself (no step
    detection) with an injected one. ``on_connect`` is called with every new connection; tests
    use it to cap ``PRAGMA max_page_count`` and so emulate a full disk.
    """

    def __init__(
        self,
        options: StoreSettings,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] | None = None,
        on_connect: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        self._options = options
        self._path: Path = options.path
        self._clock = clock
        self._steps = StepLog(clock, elapsed_clock(clock, monotonic))
        self._on_connect = on_connect
        wal_bytes = WAL_BYTES
        if options.max_bytes is not None:
            wal_bytes = max(16 * PAGE_SIZE, min(WAL_BYTES, options.max_bytes // 8))
        self._wal_bytes = wal_bytes
        self._limits = retention.Limits(
            max_rows=options.max_rows,
            max_age_s=options.max_age_s,
            max_bytes=options.max_bytes,
            wal_bytes=wal_bytes,
            busy_timeout_ms=int(options.busy_timeout_s * 1000),
        )
        self._layouts = LayoutCache()
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._closed = False
        self._last_check = -math.inf
        conns: list[sqlite3.Connection] = []
        try:
            with translated(self._path, "open"):
                self._path.parent.mkdir(parents=True, exist_ok=True)
                conns.append(self._connect())
                found = migrate(conns[0], self._clock())
                self._layouts.refresh(conns[0])
                conns.append(self._connect())
        except BaseException:
            for conn in conns:
                conn.close()
            raise
        self._writer, self._reader = conns
        logger.info("store: opened %s (schema found v%d)", self._path, found)
        with self._write_lock:
            self._maybe_enforce()  # a failure here (say, a full disk) must not block sampling

    def __repr__(self) -> str:
        return f"SqliteStore({str(self._path)!r})"

    @property
    def path(self) -> Path:
        return self._path

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            str(self._path),
            timeout=self._options.busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            configure(
                conn,
                synchronous=self._options.synchronous,
                busy_timeout_s=self._options.busy_timeout_s,
                wal_bytes=self._wal_bytes,
            )
            if self._on_connect is not None:
                self._on_connect(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _private(self, action: str) -> Iterator[sqlite3.Connection]:
        """A short-lived connection for a scan, so the hot-path reader is never held."""
        self._check_open()
        with translated(self._path, action):
            conn = self._connect()
            try:
                self._layouts.refresh(conn)
                yield conn
            finally:
                conn.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"store {self._path}: used after close")

    # -- writing -------------------------------------------------------------------------------

    def append_many(self, samples: Iterable[Sample]) -> int:
        batch = list(samples)
        if not batch:
            return 0
        encoded = encode_batch(batch)
        with self._write_lock:
            self._check_open()
            conn = self._writer
            new_layouts: dict[int, tuple[str, ...]] = {}
            with translated(self._path, f"append of {len(batch)} samples"):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    self._notice_step(conn)  # before the insert: these rows are on the new line
                    ids: dict[tuple[str, ...], int] = {}
                    for names in {row.layout for row in encoded}:
                        known = self._layouts.id_of(names)
                        if known is None:
                            known = define(conn, names)
                            new_layouts[known] = names
                        ids[names] = known
                    conn.executemany(
                        "INSERT INTO samples(ts, layout, label, data) VALUES (?, ?, ?, ?)",
                        [(r.ts, ids[r.layout], r.label, r.data) for r in encoded],
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
            self._layouts.add(new_layouts.items())
            self._maybe_enforce()
        return len(batch)

    def _notice_step(self, conn: sqlite3.Connection) -> None:
        step = self._steps.check()
        if step is None:
            return
        span = retention.id_span(conn)
        self._steps.record(step, None if span is None else span[1])
        logger.warning(
            "store: the wall clock stepped %+.1f s; rows written before are aged on their own "
            "time line",
            step,
        )

    def _maybe_enforce(self) -> None:
        """Run retention if the interval has passed; never fail an append that committed."""
        now = self._clock()
        if 0 <= now - self._last_check < self._options.retention_interval_s:
            return  # (a clock that stepped back counts as due)
        try:
            self._enforce_locked(now)
        except StoreError as exc:
            logger.warning("store: retention failed after append: %s", exc)

    def _enforce_locked(self, now: float) -> int:
        with translated(self._path, "retention"):
            self._notice_step(self._writer)
            deleted = retention.enforce(self._writer, self._path, self._limits, now, self._steps)
            if deleted and retention.id_span(self._writer) is None:
                self._steps.forget()  # new rows will reuse ids from 1
        self._last_check = now
        return deleted

    def enforce_retention(self) -> int:
        with self._write_lock:
            self._check_open()
            return self._enforce_locked(self._clock())

    def label_samples(self, labels: Sequence[SampleLabel]) -> int:
        batch = check_labels(labels)
        if not batch:
            return 0
        with self._write_lock:
            self._check_open()
            conn = self._writer
            new_layouts: dict[int, tuple[str, ...]] = {}
            labelled = 0
            with translated(self._path, f"labelling of {len(batch)} samples"):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for item in batch:
                        found = queries.row_at(conn, item.ts)
                        if found is None:
                            continue  # retention took it
                        row_id, layout_id, label, data = found
                        names = self._layout_names(conn, layout_id, new_layouts)
                        row = relabel(item, names, data, label)
                        known = self._layouts.id_of(row.layout)
                        if known is None:  # define() finds one made earlier in this batch
                            known = define(conn, row.layout)
                            new_layouts[known] = row.layout
                        conn.execute(
                            "UPDATE samples SET layout = ?, label = ?, data = ? WHERE id = ?",
                            (known, row.label, row.data, row_id),
                        )
                        labelled += 1
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
            self._layouts.add(new_layouts.items())
        return labelled

    def _layout_names(
        self, conn: sqlite3.Connection, layout_id: int, pending: dict[int, tuple[str, ...]]
    ) -> tuple[str, ...]:
        if layout_id in pending:
            return pending[layout_id]
        try:
            return self._layouts.layout(layout_id)
        except KeyError:  # defined by another process since the last refresh
            self._layouts.refresh(conn)
            return self._layouts.layout(layout_id)

    # -- reading -------------------------------------------------------------------------------

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
        with self._private("dataset read") as conn:
            columns = self._layouts.covering(names)
            ts, matrix, label_list = queries.read_rows(
                conn, columns, len(names), since=since, limit=limit, labels=labels
            )
        return build_dataset(
            names,
            ts,
            matrix,
            label_list,
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
        with self._read_lock:
            self._check_open()
            with translated(self._path, "latest read"):
                self._layouts.refresh(self._reader, max_age_s=LAYOUT_REFRESH_S)
                columns = self._layouts.covering(names)
                if not columns:  # maybe another process just defined one
                    self._layouts.refresh(self._reader)
                    columns = self._layouts.covering(names)
                return queries.read_latest(self._reader, columns, len(names), window)

    def match_samples(self, stamps: Sequence[float], *, tolerance_s: float) -> list[float | None]:
        check_tolerance(tolerance_s)
        stamps = check_stamps(stamps)
        with self._read_lock:
            self._check_open()
            with translated(self._path, "sample match"):
                return [queries.match_at_or_before(self._reader, ts, tolerance_s) for ts in stamps]

    def stats(self, *, per_feature: bool = False) -> StoreStats:
        with self._read_lock:
            self._check_open()
            with translated(self._path, "stats"):
                rows = retention.row_count(self._reader)
                pages, _free, wal = retention.sizes(self._reader, self._path)
                oldest, newest = queries.time_span(self._reader)
        counts: dict[str, int] | None = None
        if per_feature:
            with self._private("stats scan") as conn:
                counts = queries.feature_counts(conn, self._layouts)
        return StoreStats(
            rows=rows,
            bytes=pages * PAGE_SIZE + wal,
            oldest_ts=oldest,
            newest_ts=newest,
            feature_counts=counts,
            path=self._path,
        )

    def features(self) -> frozenset[str]:
        with self._read_lock:
            self._check_open()
            with translated(self._path, "features read"):
                self._layouts.refresh(self._reader)
            return self._layouts.names()

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            if self._closed:
                return
            self._closed = True
            with translated(self._path, "close"):
                try:
                    self._reader.close()
                finally:
                    self._writer.close()  # the last connection checkpoints, removes the WAL
        logger.info("store: closed %s", self._path)


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is open; SQLite may already have done so (e.g. on FULL)."""
    if not conn.in_transaction:
        return
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        logger.warning("store: rollback failed: %s", exc)
