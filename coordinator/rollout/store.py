"""Rollout state in SQLite: desired models per device, rollouts, operator requests.

One file, ``rollout.sqlite`` beside the device registry by default (``[rollout] path``), with
its own connection (WAL, ``busy_timeout``, writes in ``BEGIN IMMEDIATE`` transactions). A
sibling file rather than tables in the registry: the ingest's write batches and the rollout's
transactions never wait on each other, and resetting the health registry (deleting
``fleet.sqlite``) cannot lose what each board was told to serve. The running coordinator writes
it; ``orchard-coordinator rollout ...`` opens it from another process to queue requests and
read the state; the dashboard reads it.

Tables:

- ``desired``: per device the model it should serve (an ``Artifact`` as JSON, or none), its
  ``seq``, the rollout that set it, when, and the ``seq`` last published. ``seq`` only grows:
  each change takes ``max(previous seq + 1, unix time in milliseconds)``, so even a database
  deleted and recreated outranks what the boards already acted on (they ignore a lower
  ``seq``), unless more than a thousand changes a second were made for one device.
- ``rollouts``: one row per rollout or delivery: run, round, version, previous version, both
  artifacts, stage, canary and control members, started, soak, deadline, min labels, the
  thresholds used, the decision (outcome, reason, by, at), finished, and the canary devices
  that were offline when a rollback finished. A partial unique index allows one active
  (``canary`` or ``rolling_back``) rollout at a time.
- ``fleet_model``: the fleet's current version (what devices outside a canary get).
- ``requests``: operator requests (start, deliver, promote, abort) the CLI queues and the
  controller consumes, each with its result.

Writes compose in :meth:`RolloutStore.transaction`::

    with store.transaction() as tx:
        rollout = tx.add_rollout(...)
        tx.set_desired("pi-1", None, artifact, rollout.id)
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, cast

from agent.delivery.desired import Artifact, Desired
from coordinator.rollout.errors import RolloutError
from coordinator.rollout.policy import Criteria
from coordinator.rollout.settings import Thresholds
from coordinator.sqlite_db import Database

Clock = Callable[[], float]
Stage = Literal["canary", "rolling_back", "rolled_back", "promoted", "aborted"]
Kind = Literal["canary", "deliver"]
Outcome = Literal["promote", "rollback", "abort"]
By = Literal["auto", "operator"]
Action = Literal["start", "deliver", "promote", "abort"]
ACTIVE: Final[tuple[str, ...]] = ("canary", "rolling_back")
SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS desired (
    device_id TEXT PRIMARY KEY, fleet TEXT, version TEXT, artifact TEXT, seq INTEGER NOT NULL,
    rollout TEXT, updated REAL NOT NULL, published_seq INTEGER);
CREATE TABLE IF NOT EXISTS rollouts (
    n INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, run_id TEXT,
    round INTEGER, version TEXT NOT NULL, previous TEXT, artifact TEXT NOT NULL,
    previous_artifact TEXT, stage TEXT NOT NULL, canary TEXT NOT NULL, control TEXT NOT NULL,
    started REAL NOT NULL, soak_s REAL NOT NULL, deadline_s REAL NOT NULL,
    min_labels INTEGER NOT NULL, thresholds TEXT NOT NULL, outcome TEXT, reason TEXT,
    decided_by TEXT, decided_at REAL, finished REAL, offline TEXT NOT NULL DEFAULT '[]');
CREATE UNIQUE INDEX IF NOT EXISTS rollouts_one_active ON rollouts((1))
    WHERE stage IN ('canary', 'rolling_back');
CREATE TABLE IF NOT EXISTS fleet_model (
    one INTEGER PRIMARY KEY CHECK (one = 1), version TEXT NOT NULL, artifact TEXT NOT NULL,
    rollout TEXT, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT, action TEXT NOT NULL, params TEXT NOT NULL,
    rollout TEXT, at REAL NOT NULL, consumed REAL, result TEXT);
"""


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str
    by: By
    at: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Rollout:
    """One rollout (``kind="canary"``) or one delivery to every device (``kind="deliver"``)."""

    id: str
    kind: Kind
    run_id: str | None
    round: int | None
    version: str
    previous: str | None
    artifact: Artifact
    previous_artifact: Artifact | None
    stage: Stage
    canary: tuple[str, ...]
    control: tuple[str, ...]
    started: float
    soak_s: float
    deadline_s: float
    min_labels: int
    thresholds: Thresholds
    decision: Decision | None = None
    finished: float | None = None
    offline: tuple[str, ...] = ()  # canary devices offline when the rollback finished

    @property
    def active(self) -> bool:
        return self.stage in ACTIVE

    @property
    def soak_ends(self) -> float:
        return self.started + self.soak_s

    @property
    def criteria(self) -> Criteria:
        return Criteria(self.soak_s, self.deadline_s, self.min_labels, self.thresholds)

    def group(self, device_id: str) -> Literal["canary", "control"] | None:
        if device_id in self.canary:
            return "canary"
        return "control" if device_id in self.control else None


@dataclass(frozen=True)
class DesiredState:
    """What one device is asked to serve (``artifact`` None: nothing in particular)."""

    device_id: str
    fleet: str | None
    artifact: Artifact | None
    seq: int
    rollout: str | None
    updated: float
    published_seq: int | None = None

    @property
    def version(self) -> str | None:
        return self.artifact.version if self.artifact else None

    @property
    def published(self) -> bool:
        return self.published_seq == self.seq

    def message(self) -> Desired:
        """The retained message; the same bytes every time it is re-published."""
        return Desired(
            device_id=self.device_id,
            seq=self.seq,
            ts=self.updated,
            model=self.artifact,
            rollout=self.rollout,
        )


@dataclass(frozen=True)
class FleetModel:
    """The fleet's current version: what a device outside a canary is asked to serve."""

    artifact: Artifact
    rollout: str | None
    updated: float

    @property
    def version(self) -> str:
        return self.artifact.version


@dataclass(frozen=True)
class Request:
    id: int
    action: Action
    params: dict[str, Any] = field(default_factory=dict)
    rollout: str | None = None
    at: float = 0.0
    consumed: float | None = None
    result: str | None = None


class RolloutStore:
    """Thread-safe (one connection behind a lock, like the registry); see the module docstring."""

    def __init__(self, path: Path | str, *, clock: Clock = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self._db = Database(  # reentrant: reads inside a transaction() see its writes
            path,
            _SCHEMA,
            what="rollout store",
            error=RolloutError,
            version=SCHEMA_VERSION,
            reentrant=True,
        )
        self._query = self._db.query

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[StoreTx]:
        """One ``BEGIN IMMEDIATE`` transaction: all of it is stored, or none of it."""
        with self._db.transaction() as conn:
            yield StoreTx(conn, self.clock())

    # -- desired states ---------------------------------------------------------------------

    def desired(self, device_id: str) -> DesiredState | None:
        rows = self._query(f"SELECT {_DESIRED} FROM desired WHERE device_id=?", (device_id,))
        return _desired(rows[0]) if rows else None

    def desired_states(self) -> list[DesiredState]:
        return [_desired(r) for r in self._query(f"SELECT {_DESIRED} FROM desired ORDER BY 1")]

    def unpublished(self) -> list[DesiredState]:
        """Desired states changed since they were last published."""
        rows = self._query(
            f"SELECT {_DESIRED} FROM desired WHERE published_seq IS NULL OR published_seq < seq "
            "ORDER BY device_id"
        )
        return [_desired(r) for r in rows]

    def mark_published(self, device_id: str, seq: int) -> None:
        with self.transaction() as tx:
            tx.db.execute(
                "UPDATE desired SET published_seq=? WHERE device_id=? AND seq=?",
                (seq, device_id, seq),
            )

    def current(self) -> FleetModel | None:
        rows = self._query("SELECT artifact, rollout, updated FROM fleet_model")
        return _fleet_model(rows[0]) if rows else None

    # -- rollouts ---------------------------------------------------------------------------

    def rollout(self, rollout_id: str) -> Rollout | None:
        rows = self._query(f"SELECT {_ROLLOUT} FROM rollouts WHERE id=?", (rollout_id,))
        return _rollout(rows[0]) if rows else None

    def active(self) -> Rollout | None:
        """The rollout in ``canary`` or ``rolling_back``, if any (at most one)."""
        rows = self._query(
            f"SELECT {_ROLLOUT} FROM rollouts WHERE stage IN ('canary', 'rolling_back')"
        )
        return _rollout(rows[0]) if rows else None

    def rollouts(self, limit: int = 20, kind: Kind | None = None) -> list[Rollout]:
        """The newest first."""
        where, args = ("WHERE kind=?", (kind, limit)) if kind else ("", (limit,))
        rows = self._query(f"SELECT {_ROLLOUT} FROM rollouts {where} ORDER BY n DESC LIMIT ?", args)
        return [_rollout(r) for r in rows]

    # -- operator requests ------------------------------------------------------------------

    def add_request(
        self, action: Action, params: dict[str, Any] | None = None, rollout: str | None = None
    ) -> Request:
        """Queue a request for the running controller (``orchard-coordinator rollout ...``)."""
        with self.transaction() as tx:
            cur = tx.db.execute(
                "INSERT INTO requests(action, params, rollout, at) VALUES (?,?,?,?)",
                (action, json.dumps(params or {}, sort_keys=True), rollout, tx.now),
            )
            request_id = int(cur.lastrowid or 0)
        request = self.request(request_id)
        assert request is not None
        return request

    def request(self, request_id: int) -> Request | None:
        rows = self._query(f"SELECT {_REQUEST} FROM requests WHERE id=?", (request_id,))
        return _request(rows[0]) if rows else None

    def pending(self) -> list[Request]:
        """Requests not consumed yet, oldest first."""
        rows = self._query(f"SELECT {_REQUEST} FROM requests WHERE consumed IS NULL ORDER BY id")
        return [_request(r) for r in rows]

    def requests(self, limit: int = 20) -> list[Request]:
        """The newest first, consumed or not."""
        rows = self._query(f"SELECT {_REQUEST} FROM requests ORDER BY id DESC LIMIT ?", (limit,))
        return [_request(r) for r in rows]


class StoreTx:
    """The writes (and the reads they depend on) inside one :meth:`RolloutStore.transaction`."""

    def __init__(self, db: sqlite3.Connection, now: float) -> None:
        self.db = db
        self.now = now

    def desired(self, device_id: str) -> DesiredState | None:
        row = self.db.execute(
            f"SELECT {_DESIRED} FROM desired WHERE device_id=?", (device_id,)
        ).fetchone()
        return _desired(row) if row else None

    def set_desired(
        self, device_id: str, fleet: str | None, artifact: Artifact | None, rollout: str | None
    ) -> DesiredState | None:
        """Ask ``device_id`` to serve ``artifact``; a new ``seq`` when the message changes.

        Returns the new state, or None when the device was already asked exactly this.
        """
        old = self.desired(device_id)
        if old is not None and (old.artifact, old.rollout, old.fleet) == (artifact, rollout, fleet):
            return None
        seq = max(old.seq + 1 if old else 1, int(self.now * 1000))
        self.db.execute(
            "INSERT INTO desired(device_id, fleet, version, artifact, seq, rollout, updated) "
            "VALUES (?,?,?,?,?,?,?) ON CONFLICT(device_id) DO UPDATE SET fleet=excluded.fleet, "
            "version=excluded.version, artifact=excluded.artifact, seq=excluded.seq, "
            "rollout=excluded.rollout, updated=excluded.updated",
            (
                device_id,
                fleet,
                artifact.version if artifact else None,
                _artifact_json(artifact),
                seq,
                rollout,
                self.now,
            ),
        )
        return DesiredState(device_id, fleet, artifact, seq, rollout, self.now)

    def current(self) -> FleetModel | None:
        row = self.db.execute("SELECT artifact, rollout, updated FROM fleet_model").fetchone()
        return _fleet_model(row) if row else None

    def set_current(self, artifact: Artifact, rollout: str | None) -> None:
        self.db.execute(
            "INSERT INTO fleet_model(one, version, artifact, rollout, updated) VALUES (1,?,?,?,?) "
            "ON CONFLICT(one) DO UPDATE SET version=excluded.version, "
            "artifact=excluded.artifact, rollout=excluded.rollout, updated=excluded.updated",
            (artifact.version, _artifact_json(artifact), rollout, self.now),
        )

    def add_rollout(
        self,
        *,
        kind: Kind,
        run_id: str | None,
        round_: int | None,
        artifact: Artifact,
        previous_artifact: Artifact | None,
        stage: Stage,
        canary: Sequence[str],
        control: Sequence[str],
        soak_s: float,
        deadline_s: float,
        min_labels: int,
        thresholds: Thresholds,
        decision: Decision | None = None,
        finished: float | None = None,
    ) -> Rollout:
        n = int(self.db.execute("SELECT COALESCE(MAX(n), 0) + 1 FROM rollouts").fetchone()[0])
        rollout = Rollout(
            id=f"r-{n}",
            kind=kind,
            run_id=run_id,
            round=round_,
            version=artifact.version,
            previous=previous_artifact.version if previous_artifact else None,
            artifact=artifact,
            previous_artifact=previous_artifact,
            stage=stage,
            canary=tuple(canary),
            control=tuple(control),
            started=self.now,
            soak_s=soak_s,
            deadline_s=deadline_s,
            min_labels=min_labels,
            thresholds=thresholds,
            decision=decision,
            finished=finished,
        )
        self.db.execute(
            f"INSERT INTO rollouts(n, {_ROLLOUT}) VALUES (?{', ?' * _ROLLOUT_COLUMNS})",
            (n, *_rollout_row(rollout)),
        )
        return rollout

    def update_rollout(self, rollout: Rollout, **changes: Any) -> Rollout:
        """Store ``dataclasses.replace(rollout, **changes)``; returns it."""
        new = dataclasses.replace(rollout, **changes)
        names = [c.strip() for c in _ROLLOUT.split(",")]
        assignments = ", ".join(f"{name}=?" for name in names)
        self.db.execute(
            f"UPDATE rollouts SET {assignments} WHERE id=?", (*_rollout_row(new), rollout.id)
        )
        return new

    def finish_request(self, request_id: int, result: str) -> bool:
        """Record a request's result; False when it was consumed (or cancelled) already."""
        cur = self.db.execute(
            "UPDATE requests SET consumed=?, result=? WHERE id=? AND consumed IS NULL",
            (self.now, result, request_id),
        )
        return cur.rowcount == 1


# -- rows -----------------------------------------------------------------------------------

_DESIRED: Final = "device_id, fleet, artifact, seq, rollout, updated, published_seq"
_ROLLOUT: Final = (
    "id, kind, run_id, round, version, previous, artifact, previous_artifact, stage, canary, "
    "control, started, soak_s, deadline_s, min_labels, thresholds, outcome, reason, "
    "decided_by, decided_at, finished, offline"
)
_ROLLOUT_COLUMNS: Final = _ROLLOUT.count(",") + 1
_REQUEST: Final = "id, action, params, rollout, at, consumed, result"


def _artifact_json(artifact: Artifact | None) -> str | None:
    return None if artifact is None else json.dumps(dataclasses.asdict(artifact), sort_keys=True)


def _load_artifact(text: str | None) -> Artifact | None:
    if text is None:
        return None
    try:
        return Artifact(**json.loads(text))
    except (ValueError, TypeError) as exc:
        raise RolloutError(f"rollout store: an unreadable artifact ({exc}): {text[:200]}") from exc


def _desired(row: tuple[Any, ...]) -> DesiredState:
    device_id, fleet, artifact, seq, rollout, updated, published = row
    return DesiredState(
        device_id, fleet, _load_artifact(artifact), int(seq), rollout, float(updated), published
    )


def _fleet_model(row: tuple[Any, ...]) -> FleetModel:
    artifact = _load_artifact(row[0])
    assert artifact is not None
    return FleetModel(artifact, row[1], float(row[2]))


def _rollout_row(r: Rollout) -> tuple[Any, ...]:
    d = r.decision
    return (
        r.id,
        r.kind,
        r.run_id,
        r.round,
        r.version,
        r.previous,
        _artifact_json(r.artifact),
        _artifact_json(r.previous_artifact),
        r.stage,
        json.dumps(list(r.canary)),
        json.dumps(list(r.control)),
        r.started,
        r.soak_s,
        r.deadline_s,
        r.min_labels,
        json.dumps(r.thresholds.to_dict(), sort_keys=True),
        d.outcome if d else None,
        d.reason if d else None,
        d.by if d else None,
        d.at if d else None,
        r.finished,
        json.dumps(list(r.offline)),
    )


def _rollout(row: tuple[Any, ...]) -> Rollout:
    (
        rollout_id,
        kind,
        run_id,
        round_,
        version,
        previous,
        artifact,
        previous_artifact,
        stage,
        canary,
        control,
        started,
        soak_s,
        deadline_s,
        min_labels,
        thresholds,
        outcome,
        reason,
        decided_by,
        decided_at,
        finished,
        offline,
    ) = row
    loaded = _load_artifact(artifact)
    assert loaded is not None
    decision = (
        Decision(outcome, reason or "", decided_by or "auto", float(decided_at or 0.0))
        if outcome
        else None
    )
    return Rollout(
        id=rollout_id,
        kind=cast(Kind, kind),
        run_id=run_id,
        round=round_,
        version=version,
        previous=previous,
        artifact=loaded,
        previous_artifact=_load_artifact(previous_artifact),
        stage=cast(Stage, stage),
        canary=tuple(json.loads(canary)),
        control=tuple(json.loads(control)),
        started=float(started),
        soak_s=float(soak_s),
        deadline_s=float(deadline_s),
        min_labels=int(min_labels),
        thresholds=Thresholds.from_dict(json.loads(thresholds)),
        decision=decision,
        finished=None if finished is None else float(finished),
        offline=tuple(json.loads(offline)),
    )


def _request(row: tuple[Any, ...]) -> Request:
    request_id, action, params, rollout, at, consumed, result = row
    return Request(
        int(request_id),
        cast(Action, action),
        json.loads(params),
        rollout,
        float(at),
        consumed,
        result,
    )
