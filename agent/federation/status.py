"""The trainer's status file: one small JSON document several processes read and update.

Written by the trainer (progress and outcomes), by the agent's trainer supervisor (a kill over
budget) and by the ClientApp (a closed gate); read by the agent for ``/healthz`` and health
messages. :class:`TrainerStatus` is the one type of the document: its field names are spelled
here only.

Writers go through :func:`update`, a read-modify-write under an exclusive ``flock`` on a lock
file beside the document, replacing the document atomically (write, then rename): two writers
never lose each other's change and a reader never sees half a document. A lock held past
``LOCK_TIMEOUT_S`` (its holder frozen or gone astray) is a :class:`StatusError`, never a hang.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import AgentError

logger = logging.getLogger(__name__)

VERSION = 1
STATES = ("idle", "starting", "training", "evaluating", "exporting", "stopped")
OUTCOMES = ("ok", "gate_closed", "over_memory", "over_time", "error")
BUDGET_OUTCOMES = ("over_memory", "over_time")
LOCK_TIMEOUT_S = 2.0
_LOCK_POLL_S = 0.005


class StatusError(AgentError):
    """The status document is malformed, or its lock could not be taken in time."""


@dataclass(frozen=True)
class TrainerStatus:
    state: str = "idle"
    run_id: str | None = None
    round: int | None = None
    last_duration_s: float | None = None
    peak_rss_mb: float | None = None
    last_outcome: str | None = None
    last_reason: str | None = None
    failures_in_row: int = 0
    pid: int | None = None
    request_started: float | None = None  # wall-clock start of the request being served
    updated: float | None = None
    version: int = VERSION

    def __post_init__(self) -> None:
        for name, value in dataclasses.asdict(self).items():
            _check(name, value)

    @property
    def over_budget(self) -> bool:
        return self.last_outcome in BUDGET_OUTCOMES

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def encode(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes | str) -> TrainerStatus:
        """Parse a document; a :class:`StatusError` names the field, value and expectation."""
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise StatusError(f"trainer status: expected a JSON object. Received: {exc}") from None
        if not isinstance(doc, dict):
            raise StatusError(f"trainer status: expected a JSON object. Received: {doc!r:.80}")
        version = doc.get("version")
        if version != VERSION:
            raise StatusError(
                f"trainer status: expected version={VERSION}. Received: version={version!r}"
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(doc) - fields)
        if unknown:
            raise StatusError(
                f"trainer status: expected only the fields {sorted(fields)}. "
                f"Received: {unknown[0]}={doc[unknown[0]]!r:.80}"
            )
        missing = sorted(fields - set(doc))
        if missing:
            raise StatusError(f"trainer status: expected a field {missing[0]!r}. Received: none")
        return cls(**doc)


def _check(name: str, value: Any) -> None:
    """Raise :class:`StatusError` unless ``value`` fits field ``name``."""
    rule = _RULES[name]
    if value is None and rule.optional:
        return
    ok = isinstance(value, rule.types) and not isinstance(value, bool)
    if ok and rule.choices:
        ok = value in rule.choices
    if ok and isinstance(value, int | float) and not isinstance(value, bool):
        ok = value >= 0 if rule.non_negative else True
    if not ok:
        raise StatusError(
            f"trainer status: expected {name} to be {rule.expected}. Received: {name}={value!r:.80}"
        )


@dataclass(frozen=True)
class _Rule:
    types: tuple[type, ...]
    expected: str
    optional: bool = True
    choices: tuple[str, ...] = ()
    non_negative: bool = False


_NUMBER = (int, float)
_RULES: dict[str, _Rule] = {
    "state": _Rule((str,), f"one of {list(STATES)}", optional=False, choices=STATES),
    "run_id": _Rule((str,), "a string or null"),
    "round": _Rule((int,), "a non-negative integer or null", non_negative=True),
    "last_duration_s": _Rule(_NUMBER, "a non-negative number or null", non_negative=True),
    "peak_rss_mb": _Rule(_NUMBER, "a non-negative number or null", non_negative=True),
    "last_outcome": _Rule((str,), f"one of {list(OUTCOMES)} or null", choices=OUTCOMES),
    "last_reason": _Rule((str,), "a string or null"),
    "failures_in_row": _Rule((int,), "a non-negative integer", False, non_negative=True),
    "pid": _Rule((int,), "a process id or null", non_negative=True),
    "request_started": _Rule(_NUMBER, "a wall-clock time or null", non_negative=True),
    "updated": _Rule(_NUMBER, "a wall-clock time or null", non_negative=True),
    "version": _Rule((int,), f"{VERSION}", optional=False, non_negative=True),
}


def read(path: Path) -> TrainerStatus:
    """The current status; the defaults when the file is missing or unreadable (logged)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return TrainerStatus()
    except OSError as exc:
        logger.warning("cannot read the trainer status %s: %s", path, exc)
        return TrainerStatus()
    try:
        return TrainerStatus.decode(data)
    except StatusError as exc:
        logger.warning("ignoring the trainer status %s: %s", path, exc)
        return TrainerStatus()


def update(path: Path, **changes: Any) -> TrainerStatus:
    """Merge ``changes`` into the file under its lock; an outcome also counts failures in a row.

    Raises :class:`StatusError` for a change that does not fit its field (nothing is written)
    or when the lock is not free within ``LOCK_TIMEOUT_S``.
    """
    with _locked(path):
        current = read(path)
        outcome = changes.get("last_outcome")
        if outcome is not None:
            changes["failures_in_row"] = 0 if outcome == "ok" else current.failures_in_row + 1
        try:
            new = dataclasses.replace(current, **changes, updated=time.time())
        except TypeError as exc:  # an unknown field
            raise StatusError(f"trainer status: {exc}") from None
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(new.encode())
        os.replace(tmp, path)
        return new


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    timeout = LOCK_TIMEOUT_S
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(f"{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o660)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StatusError(
                        f"trainer status: the lock {path.name}.lock was held for more than "
                        f"{timeout:g} s"
                    ) from None
                time.sleep(_LOCK_POLL_S)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def stop_recorded(
    path: Path,
    since: float,
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> TrainerStatus:
    """The status once a stop of the trainer after ``since`` (wall time) is recorded, or as it
    is after ``timeout`` seconds.

    For a caller whose trainer connection just closed: the supervisor records why it killed
    the trainer before the kill, except when the frozen trainer held the status lock; then it
    records right after the kill, which is what closed the connection. Polls every 0.1 s.
    """
    deadline = clock() + timeout
    while True:
        current = read(path)
        recorded = current.state == "stopped" and (current.updated or 0.0) >= since
        if recorded or clock() >= deadline:
            return current
        pause(0.1)


def path_for(state_dir: Path) -> Path:
    """Where the trainer's status file of an agent with ``state_dir`` lives."""
    return state_dir / "trainer" / "status.json"


# The /healthz sections of the federation side (agent/healthz.py puts them together).
@dataclass(frozen=True)
class Supernode:
    supernode: str  # stopped | starting | connected | backoff | failed | disabled
    node_id: int | None = None
    restarts: int = 0
    last_exit: int | None = None
    last_error: str | None = None


DISABLED = Supernode("disabled")


@dataclass(frozen=True)
class Trainer:
    """The trainer's status document and its supervisor's counters."""

    status: TrainerStatus
    starts: int = 0
    kills: int = 0
    running: bool = False
