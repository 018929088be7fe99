"""The prediction log: every served prediction, bounded, written off the request's path.

Where it lives. A file of its own beside the readings, ``<state_dir>/predictions.db``
(``[labels] path``), not a table inside ``store.db``:

* the store's byte budget (``[store] max_bytes``) is enforced on its file's page count by
  deleting the oldest *readings*; predictions in the same file would make retention throw
  away sensor history to make room for them, and the log has bounds of its own (count, age);
* SQLite locks writes per database file: the sampler's appends and the log's writes never
  wait for each other, and the store's single-writer design stays as it is;
* the trainer and ``import-csv`` open ``store.db`` and need to know nothing about the log; the
  store's schema migrations stay its own.

The cost: a label is written to two files, so a crash between the two commits can leave the
reading labelled and the log entry not (the label can simply be posted again). With a
:class:`~agent.store.MemoryStore` (tests) the log is an in-memory SQLite database.

The hot path. :meth:`PredictionLog.ids` takes a block of sequence numbers under a lock and
:meth:`record` appends one tuple per request to a deque: about a microsecond, no I/O, no
signalling. A writer thread turns pending requests into rows every ``flush_s`` (one
transaction), applies retention every ``retention_s``, and :meth:`close` writes what is left,
so a clean stop loses nothing; a kill -9 loses at most the last ``flush_s`` of predictions.
Readers that must see the latest predictions (labels, live metrics) call :meth:`flush` first.
If the disk refuses writes, pending predictions are dropped and counted (``lost``), never
retried without bound; the deque itself holds at most :data:`MAX_PENDING` requests.
"""

from __future__ import annotations

import collections
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.errors import StoreError
from agent.labels import logdb
from agent.labels.logdb import Entry, LabelWrite, Summary
from agent.store.sqlerrors import translated

logger = logging.getLogger(__name__)

MAX_PENDING = 4096
CACHE_KIB = 256
MEMORY = Path(":memory:")

# One prediction's (class, values, confidence): atoms only, so a pending request holds no
# dict for the garbage collector to walk.
Output = tuple[str | None, tuple[float, ...] | None, float | None]
# seq of the first prediction, ts, version, outputs (None: failed), latency per prediction
# (ms), sample ts, count
Pending = tuple[int, float, str, tuple[Output, ...] | None, float, float | None, int]


class PredictionLog:
    """See the module docstring. ``path=None``: in memory. ``clock`` is the wall clock."""

    def __init__(
        self,
        path: Path | None,
        *,
        max_predictions: int = 50_000,
        max_age_s: float = 14 * 86400.0,
        clock: Callable[[], float] = time.time,
        flush_s: float = 0.5,
        retention_s: float = 60.0,
        skip_ids: int = 0,
    ) -> None:
        self.path = MEMORY if path is None else Path(path)
        self.max_predictions = max_predictions
        self.max_age_s = max_age_s
        self._clock = clock
        self._flush_s = flush_s
        self._retention_s = retention_s
        self._pending: collections.deque[Pending] = collections.deque(maxlen=MAX_PENDING)
        self._ids = threading.Lock()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._last_retention = -float("inf")
        self._failing = False
        self.generation = 0  # +1 per committed write: live metrics recompute only on change
        self.dropped = 0  # requests dropped because the pending queue was full
        self.lost = 0  # predictions the disk refused
        with translated(self.path, "open of the prediction log"):
            if path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=5.0
            )
            try:
                self._configure(path is not None)
                self._log_id, self._next = logdb.create(self._conn, skip_ids)
            except BaseException:
                self._conn.close()
                raise
        self._prefix = f"{self._log_id}-"
        logger.info("prediction log: opened %s", self.path)

    def _configure(self, on_disk: bool) -> None:
        conn = self._conn
        conn.execute("PRAGMA busy_timeout = 5000")
        if on_disk:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        conn.execute("PRAGMA temp_store = MEMORY")

    # -- the hot path -------------------------------------------------------------------------

    def ids(self, n: int) -> list[str]:
        """``n`` new prediction ids (``<log id>-<seq in hex>``), unique for this log file."""
        with self._ids:
            first = self._next
            self._next += n
        prefix = self._prefix
        return [f"{prefix}{seq:x}" for seq in range(first, first + n)]

    def record(
        self,
        ids: Sequence[str],
        version: str,
        results: list[dict[str, Any]] | None,
        latency_s: float,
        sample_ts: float | None = None,
    ) -> None:
        """Queue predictions ``ids`` (from one :meth:`ids` call) and their formatted results
        (``agent.serve.results``); ``results=None``: they failed. ``latency_s`` is the whole
        request's; each prediction is logged with its share."""
        n = len(ids)
        if not n:
            return
        if len(self._pending) == MAX_PENDING:
            self.dropped += 1
        first = int(ids[0][len(self._prefix) :], 16)
        outputs = None if results is None else tuple(map(_output, results))
        self._pending.append(
            (first, self._clock(), version, outputs, latency_s * 1000.0 / n, sample_ts, n)
        )

    def record_failure(self, version: str, n: int, latency_s: float) -> None:
        """``n`` predictions of ``version`` that failed (inference error, non-finite output)."""
        if n > 0:
            self.record(self.ids(n), version, None, latency_s)

    # -- the writer ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (without it, :meth:`flush` and :meth:`close` still write)."""
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._flush_s):
            try:
                self.flush()
            except StoreError as exc:
                if not self._failing:
                    logger.warning("prediction log: write failed: %s", exc)
                self._failing = True
            except Exception:  # the writer must outlive any bug in one batch
                logger.exception("prediction log: flush failed")

    def flush(self) -> None:
        """Write every pending prediction now (one transaction); apply retention when due."""
        with self._lock:
            self._check_open()
            batch: list[Pending] = []
            while True:
                try:
                    batch.append(self._pending.popleft())
                except IndexError:
                    break
            if batch:
                rows = [row for item in batch for row in _rows(item)]
                try:
                    with self._transaction("write of predictions") as conn:
                        logdb.insert(conn, rows, self._next)
                except StoreError:
                    self.lost += len(rows)
                    raise
                self.generation += 1
                if self._failing:
                    logger.info("prediction log: writing again")
                    self._failing = False
            now = self._clock()
            if not 0 <= now - self._last_retention < self._retention_s:
                self._last_retention = now
                with self._transaction("retention of the prediction log") as conn:
                    deleted = logdb.enforce(
                        conn, max_rows=self.max_predictions, cutoff=now - self.max_age_s
                    )
                if deleted:
                    self.generation += 1
                    logger.info("prediction log: retention deleted %d oldest entries", deleted)

    @contextmanager
    def _transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        with translated(self.path, action):
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Stop the writer, write what is pending, close the file. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
        with self._lock:
            if self._closed:
                return
            try:
                self.flush()
            except StoreError as exc:
                logger.warning("prediction log: final write failed: %s", exc)
            finally:
                self._closed = True
                self._conn.close()
        logger.info("prediction log: closed %s", self.path)

    # -- reading and labelling ----------------------------------------------------------------

    def seq_of(self, prediction_id: str) -> int | None:
        """The sequence number inside an id of this log, or ``None`` (another log's, or not an
        id at all)."""
        if not prediction_id.startswith(self._prefix):
            return None
        digits = prediction_id[len(self._prefix) :]
        if not 0 < len(digits) <= 16 or digits != digits.lower():
            return None
        try:
            return int(digits, 16)
        except ValueError:
            return None

    def id_of(self, seq: int) -> str:
        return f"{self._prefix}{seq:x}"

    def entries(self, seqs: Sequence[int]) -> dict[int, Entry]:
        with self._reading("read of predictions") as conn:
            return logdb.entries(conn, seqs)

    def from_samples(self, stamps: Sequence[float]) -> dict[float, list[Entry]]:
        with self._reading("read of predictions") as conn:
            return logdb.from_samples(conn, stamps)

    def set_labels(self, writes: Sequence[LabelWrite]) -> None:
        """Set labels on entries, in one transaction."""
        if not writes:
            return
        with self._lock:
            self._check_open()
            with self._transaction("labelling of predictions") as conn:
                logdb.set_labels(conn, writes, self._clock())
            self.generation += 1

    def note_serving(self, version: str) -> None:
        """Record that ``version`` serves now (its ``since``, if it is new)."""
        now = self._clock()
        with self._lock:
            self._check_open()
            with self._transaction("note of the serving version") as conn:
                logdb.touch(conn, [(version, now, now)])
            self.generation += 1

    def begin_period(self, version: str, start: float | None = None) -> bool:
        """``version`` was just installed: its figures restart (see :func:`logdb.begin_period`)."""
        when = self._clock() if start is None else start
        with self._lock:
            self.flush()
            self._check_open()
            with self._transaction("start of a serving period") as conn:
                archived = logdb.begin_period(conn, version, when)
            self.generation += 1
        return archived

    def summary(self, version: str) -> Summary:
        with self._reading("live metrics") as conn:
            return logdb.summary(conn, version)

    def previous(self, serving: str | None) -> str | None:
        with self._reading("live metrics") as conn:
            return logdb.previous(conn, serving)

    def count(self) -> int:
        with self._reading("count") as conn:
            return int(conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])

    @contextmanager
    def _reading(self, action: str) -> Iterator[sqlite3.Connection]:
        """Flush first, so a reader sees every prediction served before the call."""
        with self._lock:
            self.flush()
            self._check_open()
            with translated(self.path, action):
                yield self._conn

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"prediction log {self.path}: used after close")


def _rows(item: Pending) -> Iterator[logdb.Row]:
    first, ts, version, outputs, latency_ms, sample_ts, n = item
    latency_ms = round(latency_ms, 4)
    if outputs is None:
        for i in range(n):
            yield (first + i, ts, version, None, None, None, latency_ms, 1, None)
        return
    for i, (output, values, confidence) in enumerate(outputs):
        text = None if values is None else json.dumps(list(values))
        yield (first + i, ts, version, output, text, confidence, latency_ms, 0, sample_ts)


def _output(result: dict[str, Any]) -> Output:
    """(class, values, confidence) of one formatted result (``agent.serve.results``)."""
    if "label" in result:
        top = max(result["scores"].values(), default=None)
        confidence = None if top is None else min(1.0, max(0.0, float(top)))
        return str(result["label"]), None, confidence
    if "values" in result:
        return None, tuple(result["values"].values()), None
    return None, (result["score"],), None
