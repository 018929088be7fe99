"""The command history: every signed command ``orchard-coordinator config set`` issued.

One SQLite file, ``config.sqlite`` beside the device registry (WAL, ``busy_timeout``, writes in
``BEGIN IMMEDIATE`` transactions, so two CLIs at once never take the same ``seq``). A sibling
file like ``rollout.sqlite``: resetting the health registry cannot lose what each board was
sent. The answers (acks) arrive through the running coordinator's ingest and are stored in the
registry (:meth:`coordinator.health.registry.Registry.acks`); :mod:`coordinator.remote.view`
joins the two.

``seq`` only grows per device: each command takes ``max(previous seq + 1, unix time in
milliseconds)``, so even a store deleted and recreated outranks what a board already acted on
(it refuses a ``seq`` <= the last one), unless more than a thousand commands a second were
issued for one device. A command is stored, signed, before it is published; ``published`` is
set once the broker confirmed it (PUBACK)::

    store = CommandStore(path)
    sent = store.issue("pi-1", "barn", topic, lambda seq, now: sign(build(seq, now)))
    ... publish sent.command ...
    store.mark_published("pi-1", sent.seq)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from agent.health.schema import SchemaError
from agent.remote.command import Command
from coordinator.remote.errors import RemoteError
from coordinator.sqlite_db import Database

Clock = Callable[[], float]
SCHEMA_VERSION: Final = 1
FILE_NAME: Final = "config.sqlite"

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS commands (
    device_id TEXT NOT NULL, seq INTEGER NOT NULL, fleet TEXT, topic TEXT NOT NULL,
    issued REAL NOT NULL, expires REAL NOT NULL, patch TEXT NOT NULL, command TEXT NOT NULL,
    published REAL, PRIMARY KEY (device_id, seq));
"""
_COLUMNS: Final = "command, fleet, topic, published"


def default_path(registry: Path) -> Path:
    """``config.sqlite`` beside the registry file."""
    return registry.with_name(FILE_NAME)


@dataclass(frozen=True)
class SentCommand:
    """A command as stored: the signed message, where it goes, and when the broker took it."""

    command: Command
    fleet: str | None
    topic: str
    published: float | None = None  # the broker's PUBACK; None: not (yet) published

    @property
    def device_id(self) -> str:
        return self.command.device_id

    @property
    def seq(self) -> int:
        return self.command.seq

    @property
    def patch(self) -> dict[str, str | None]:
        return self.command.patch


class CommandStore:
    """Thread-safe (one connection behind a lock); see the module docstring."""

    def __init__(self, path: Path | str, *, clock: Clock = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self._db = Database(
            path, _SCHEMA, what="command store", error=RemoteError, version=SCHEMA_VERSION
        )
        self._tx = self._db.transaction
        self._query = self._db.query

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> CommandStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- writes -----------------------------------------------------------------------------

    def issue(
        self,
        device_id: str,
        fleet: str | None,
        topic: str,
        make: Callable[[int, float], Command],
    ) -> SentCommand:
        """Store the command ``make(seq, now)`` builds with this device's next ``seq``.

        ``make`` runs inside the transaction (it signs): the ``seq`` it is given is taken only
        if the command is stored.
        """
        with self._tx() as db:
            now = self.clock()
            (last,) = db.execute(
                "SELECT MAX(seq) FROM commands WHERE device_id=?", (device_id,)
            ).fetchone()
            seq = max(int(last) + 1 if last is not None else 1, int(now * 1000))
            command = make(seq, now)
            if (command.device_id, command.seq) != (device_id, seq):
                raise RemoteError(
                    f"command store: expected a command for {device_id} seq {seq}. "
                    f"Received: device_id={command.device_id!r}, seq={command.seq}"
                )
            db.execute(
                "INSERT INTO commands VALUES (?,?,?,?,?,?,?,?,NULL)",
                (
                    device_id,
                    seq,
                    fleet,
                    topic,
                    command.issued,
                    command.expires,
                    json.dumps(command.patch, sort_keys=True),
                    command.to_json(),
                ),
            )
        return SentCommand(command, fleet, topic)

    def mark_published(self, device_id: str, seq: int) -> float:
        """Record the broker's confirmation of command ``seq``; returns the time stored."""
        now = self.clock()
        with self._tx() as db:
            db.execute(
                "UPDATE commands SET published=? WHERE device_id=? AND seq=?",
                (now, device_id, seq),
            )
        return now

    # -- reads ------------------------------------------------------------------------------

    def commands(self, device_id: str) -> list[SentCommand]:
        """Every command issued to ``device_id``, oldest (lowest ``seq``) first."""
        rows = self._query(
            f"SELECT {_COLUMNS} FROM commands WHERE device_id=? ORDER BY seq", (device_id,)
        )
        return [self._sent(row) for row in rows]

    def command(self, device_id: str, seq: int) -> SentCommand | None:
        rows = self._query(
            f"SELECT {_COLUMNS} FROM commands WHERE device_id=? AND seq=?", (device_id, seq)
        )
        return self._sent(rows[0]) if rows else None

    def last(self, device_id: str) -> SentCommand | None:
        """The newest command for ``device_id`` (what its retained topic holds, once sent)."""
        rows = self._query(
            f"SELECT {_COLUMNS} FROM commands WHERE device_id=? ORDER BY seq DESC LIMIT 1",
            (device_id,),
        )
        return self._sent(rows[0]) if rows else None

    def devices(self) -> list[str]:
        return [r[0] for r in self._query("SELECT DISTINCT device_id FROM commands ORDER BY 1")]

    def _sent(self, row: tuple[Any, ...]) -> SentCommand:
        text, fleet, topic, published = row
        try:
            command = Command.from_json(text)
        except SchemaError as exc:
            raise RemoteError(
                f"command store {self.path}: a stored command is unreadable: {exc}"
            ) from None
        return SentCommand(command, fleet, topic, published)
