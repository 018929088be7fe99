"""The device registry: one SQLite file (WAL) the ingest writes and everyone else reads.

It keeps, per device, the last status, birth and health, first/last seen, the Flower node id
the device reported, and the coordinator's view of its training rounds; plus a health history
(for sparklines, pruned after ``retention_s``), recent events and every ``ack`` a device sent
for a remote configuration command (``acks``, read by ``orchard-coordinator config``: one row
per answer, a redelivered copy stored once, pruned after 90 days). All methods are
thread-safe; the clock is injectable so staleness can be tested without waiting::

    reg = Registry(path, clock=time.time)
    reg.record("pi-1", None, status, received_at=time.time())
    reg.device("pi-1").state        # "ready", "stale", "lost", ...
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from agent.health.schema import Ack, Birth, Event, Health, Payload, Status
from coordinator.errors import RegistryError
from coordinator.health.records import DeviceRecord, effective_state
from coordinator.sqlite_db import Database

Clock = Callable[[], float]


@dataclass(frozen=True)
class Message:
    """One validated message for :meth:`Registry.record_many` (``raw``: its JSON, if at hand)."""

    device_id: str
    fleet: str | None
    payload: Payload
    received_at: float
    retained: bool = False
    raw: str | None = None


@dataclass(frozen=True)
class AckRecord:
    """One stored ``Ack``: a device's answer to command ``seq`` (``ts``: the device's clock)."""

    device_id: str
    seq: int
    ts: float
    received_at: float
    status: str
    config_version: str | None
    live: bool
    errors: tuple[str, ...]


_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY, fleet TEXT, status TEXT, session INTEGER, reasons TEXT,
    status_ts REAL, birth TEXT, health TEXT, first_seen REAL NOT NULL, last_seen REAL NOT NULL,
    last_health_at REAL, interval_s REAL, node_id INTEGER, last_round INTEGER,
    last_outcome TEXT, failures_in_row INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS devices_node ON devices(node_id);
CREATE TABLE IF NOT EXISTS history (
    device_id TEXT NOT NULL, ts REAL NOT NULL, cpu_pct REAL, cpu_temp_c REAL,
    memory_pct REAL, rss_mb REAL, inference_p95_ms REAL);
CREATE INDEX IF NOT EXISTS history_device_ts ON history(device_id, ts);
CREATE TABLE IF NOT EXISTS events (
    device_id TEXT NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_device_ts ON events(device_id, ts);
CREATE TABLE IF NOT EXISTS acks (
    device_id TEXT NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL, received_at REAL NOT NULL,
    status TEXT NOT NULL, config_version TEXT, live INTEGER NOT NULL, errors TEXT NOT NULL,
    UNIQUE(device_id, seq, status, ts));
"""
HISTORY_METRICS: Final = ("cpu_pct", "cpu_temp_c", "memory_pct", "rss_mb", "inference_p95_ms")
_PRUNE_EVERY_S: Final = 60.0
ACK_RETENTION_S: Final = 90 * 24 * 3600.0  # what `config history` can show


class Registry:
    def __init__(
        self,
        path: Path | str,
        *,
        clock: Clock = time.time,
        stale_after_intervals: float = 3.0,
        default_interval_s: float = 30.0,
        retention_s: float = 24 * 3600.0,
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self.stale_after_intervals = stale_after_intervals
        self.default_interval_s = default_interval_s
        self.retention_s = retention_s
        self._last_prune = clock()
        self._node_ids: dict[str, int] = {}  # what the table says, to skip no-op updates
        self._db = Database(path, _SCHEMA, what="device registry", error=RegistryError)
        self._tx = self._db.transaction
        self._query = self._db.query

    def close(self) -> None:
        self._db.close()

    # -- writes -----------------------------------------------------------------------------

    def record(
        self,
        device_id: str,
        fleet: str | None,
        payload: Payload,
        *,
        received_at: float | None = None,
        retained: bool = False,
        raw: str | None = None,
    ) -> None:
        """Store one validated message. A retained replay does not count as hearing from it."""
        at = self.clock() if received_at is None else received_at
        self.record_many([Message(device_id, fleet, payload, at, retained, raw)])

    def record_many(self, messages: Sequence[Message]) -> None:
        """Store validated messages in one transaction (the ingest's batches)."""
        if not messages:
            return
        try:
            with self._tx() as db:
                for m in messages:
                    self._write(db, m)
        except RegistryError:
            self._node_ids.clear()  # rolled back: the cache may be ahead of the table
            raise
        if self.clock() - self._last_prune > _PRUNE_EVERY_S:
            self.prune()

    def _write(self, db: sqlite3.Connection, m: Message) -> None:
        payload, device_id = m.payload, m.device_id
        seen = min(m.received_at, payload.ts) if m.retained else m.received_at
        db.execute(
            "INSERT INTO devices(device_id, fleet, first_seen, last_seen) VALUES (?,?,?,?) "
            "ON CONFLICT(device_id) DO UPDATE SET fleet=excluded.fleet, "
            "last_seen=max(last_seen, excluded.last_seen)",
            (device_id, m.fleet, seen, seen),
        )
        if isinstance(payload, Status):
            db.execute(
                # A newer session or timestamp wins; so does the session's end (its Last
                # Will was stamped at connect, before the statuses it outlives). An old
                # retained copy from an earlier session does not.
                "UPDATE devices SET status=?, session=?, reasons=?, status_ts=? "
                "WHERE device_id=? AND (session IS NULL OR ? > session OR ? >= status_ts "
                "OR (? = session AND ? IN ('lost', 'disconnected')))",
                (
                    payload.state,
                    payload.session,
                    json.dumps(payload.reasons),
                    payload.ts,
                    device_id,
                    payload.session,
                    payload.ts,
                    payload.session,
                    payload.state,
                ),
            )
        elif isinstance(payload, Birth):
            db.execute(
                "UPDATE devices SET birth=?, interval_s=? WHERE device_id=?",
                (m.raw or payload.to_json(), payload.health_interval_s, device_id),
            )
        elif isinstance(payload, Health):
            self._record_health(db, m, payload, seen)
        elif isinstance(payload, Event):
            db.execute(
                "INSERT INTO events(device_id, ts, kind, data) VALUES (?,?,?,?)",
                (device_id, m.received_at, payload.kind, json.dumps(payload.data)),
            )
        elif isinstance(payload, Ack):
            db.execute(  # QoS 1 may deliver an answer twice: the same (seq, status, ts) once
                "INSERT OR IGNORE INTO acks VALUES (?,?,?,?,?,?,?,?)",
                (
                    device_id,
                    payload.seq,
                    payload.ts,
                    m.received_at,
                    payload.status,
                    payload.config_version,
                    payload.live,
                    json.dumps(payload.errors),
                ),
            )

    def _record_health(self, db: sqlite3.Connection, m: Message, h: Health, at: float) -> None:
        device_id = m.device_id
        db.execute(
            "UPDATE devices SET health=?, last_health_at=? WHERE device_id=?",
            (m.raw or h.to_json(), at, device_id),
        )
        node_id = h.federation.node_id
        if node_id is not None and self._node_ids.get(device_id) != node_id:
            # a node id belongs to one device: the latest to report it
            db.execute(
                "UPDATE devices SET node_id=NULL WHERE node_id=? AND device_id!=?",
                (_to_sql(node_id), device_id),
            )
            db.execute(
                "UPDATE devices SET node_id=? WHERE device_id=?", (_to_sql(node_id), device_id)
            )
            self._node_ids = {d: n for d, n in self._node_ids.items() if n != node_id}
            self._node_ids[device_id] = node_id
        db.execute(
            "INSERT INTO history VALUES (?,?,?,?,?,?,?)",
            (device_id, at, h.cpu_pct, h.cpu_temp_c, h.memory.pct, h.rss_mb, h.inference.p95_ms),
        )

    def record_outcome(self, device_id: str, round_: int, ok: bool, outcome: str = "") -> None:
        """The coordinator's view of a training round for a device (drives failures in a row)."""
        outcome = outcome or ("ok" if ok else "failed")
        with self._tx() as db:
            db.execute(
                "UPDATE devices SET last_round=?, last_outcome=?, failures_in_row="
                "CASE WHEN ? THEN 0 ELSE failures_in_row + 1 END WHERE device_id=?",
                (round_, outcome, ok, device_id),
            )

    def record_node_outcome(self, node_id: int, round_: int, ok: bool, outcome: str = "") -> bool:
        """:meth:`record_outcome` for the device that reported Flower node ``node_id``.

        Returns False (and records nothing) when no device has reported that node id.
        """
        rec = self.device_for_node(node_id)
        if rec is None:
            return False
        self.record_outcome(rec.device_id, round_, ok, outcome)
        return True

    def prune(self) -> int:
        """Drop history and events older than the retention (acks after 90 days); rows removed."""
        cutoff = self.clock() - self.retention_s
        self._last_prune = self.clock()
        with self._tx() as db:
            n = db.execute("DELETE FROM history WHERE ts < ?", (cutoff,)).rowcount
            n += db.execute("DELETE FROM events WHERE ts < ?", (cutoff,)).rowcount
            n += db.execute(
                "DELETE FROM acks WHERE received_at < ?", (self.clock() - ACK_RETENTION_S,)
            ).rowcount
        return int(n)

    # -- reads ------------------------------------------------------------------------------

    _COLUMNS: Final = (
        "device_id, fleet, status, session, reasons, birth, health, first_seen, last_seen, "
        "last_health_at, interval_s, node_id, last_round, last_outcome, failures_in_row"
    )

    def devices(self) -> list[DeviceRecord]:
        rows = self._query(f"SELECT {self._COLUMNS} FROM devices ORDER BY device_id")
        now = self.clock()
        return [self._record(row, now) for row in rows]

    def device(self, device_id: str) -> DeviceRecord | None:
        rows = self._query(f"SELECT {self._COLUMNS} FROM devices WHERE device_id=?", (device_id,))
        return self._record(rows[0], self.clock()) if rows else None

    def device_for_node(self, node_id: int) -> DeviceRecord | None:
        rows = self._query(
            f"SELECT {self._COLUMNS} FROM devices WHERE node_id=?", (_to_sql(node_id),)
        )
        return self._record(rows[0], self.clock()) if rows else None

    def _record(self, row: tuple[Any, ...], now: float) -> DeviceRecord:
        (
            device_id,
            fleet,
            status,
            session,
            reasons,
            birth,
            health,
            first_seen,
            last_seen,
            last_health_at,
            interval_s,
            node_id,
            last_round,
            last_outcome,
            failures,
        ) = row
        interval = float(interval_s or self.default_interval_s)
        silent = max(0.0, now - float(last_seen))
        return DeviceRecord(
            device_id=device_id,
            fleet=fleet,
            status=status,
            session=session,
            reasons=tuple(json.loads(reasons)) if reasons else (),
            birth_doc=_load(birth),
            health_doc=_load(health),
            first_seen=float(first_seen),
            last_seen=float(last_seen),
            last_health_at=last_health_at,
            interval_s=interval,
            node_id=None if node_id is None else _from_sql(node_id),
            last_round=last_round,
            last_outcome=last_outcome,
            failures_in_row=int(failures),
            state=effective_state(status, silent, interval, self.stale_after_intervals),
            silent_s=silent,
        )

    def history(
        self, device_id: str, since: float | None = None, limit: int = 500
    ) -> list[dict[str, Any]]:
        """Health points (oldest first) for one device's charts."""
        rows = self._query(
            "SELECT ts, cpu_pct, cpu_temp_c, memory_pct, rss_mb, inference_p95_ms FROM history "
            "WHERE device_id=? AND ts>=? ORDER BY ts DESC LIMIT ?",
            (device_id, since if since is not None else float("-inf"), limit),
        )
        keys = ("ts", *HISTORY_METRICS)
        return [dict(zip(keys, row, strict=True)) for row in reversed(rows)]

    def sparklines(self, metric: str, points: int = 30) -> dict[str, list[float | None]]:
        """The last ``points`` values of ``metric`` for every device, in one query."""
        if metric not in HISTORY_METRICS:
            raise RegistryError(
                f"expected one of {', '.join(HISTORY_METRICS)}. Received: metric={metric!r}"
            )
        rows = self._query(
            f"SELECT device_id, {metric} FROM (SELECT device_id, ts, {metric}, ROW_NUMBER() "
            "OVER (PARTITION BY device_id ORDER BY ts DESC) AS rn FROM history) "
            "WHERE rn <= ? ORDER BY device_id, ts",
            (points,),
        )
        out: dict[str, list[float | None]] = {}
        for device_id, value in rows:
            out.setdefault(device_id, []).append(value)
        return out

    def events(self, device_id: str, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT ts, kind, data FROM events WHERE device_id=? ORDER BY ts DESC LIMIT ?",
            (device_id, limit),
        )
        return [{"ts": ts, "kind": kind, "data": json.loads(data)} for ts, kind, data in rows]

    def acks(self, device_id: str, seqs: Iterable[int] | None = None) -> list[AckRecord]:
        """``device_id``'s answers to commands (all, or those for ``seqs``), by seq then time."""
        rows = self._query(
            "SELECT device_id, seq, ts, received_at, status, config_version, live, errors "
            "FROM acks WHERE device_id=? ORDER BY seq, ts, received_at",
            (device_id,),
        )
        wanted = None if seqs is None else set(seqs)
        out = [
            AckRecord(d, int(seq), ts, at, status, version, bool(live), tuple(json.loads(e)))
            for d, seq, ts, at, status, version, live, e in rows
        ]
        return out if wanted is None else [a for a in out if a.seq in wanted]

    def counts(self) -> dict[str, int]:
        """Devices per effective state."""
        rows = self._query("SELECT status, last_seen, interval_s FROM devices")
        now = self.clock()
        out: dict[str, int] = {}
        for status, last_seen, interval_s in rows:
            interval = float(interval_s or self.default_interval_s)
            silent = max(0.0, now - float(last_seen))
            state = effective_state(status, silent, interval, self.stale_after_intervals)
            out[state] = out.get(state, 0) + 1
        return out


def _to_sql(node_id: int) -> int:
    """Flower node ids are unsigned 64-bit; SQLite integers are signed: store the same bits."""
    return node_id - 2**64 if node_id >= 2**63 else node_id


def _from_sql(value: int) -> int:
    return value + 2**64 if value < 0 else value


def _load(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None
