"""Translating sqlite3 exceptions into :class:`agent.errors.StoreError` at the boundary.

Messages say what failed, on which file, and what a user can do: "disk full", "corrupt",
"locked", "read-only", "cannot open".
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.errors import StoreError

logger = logging.getLogger(__name__)

# Primary result codes (https://www.sqlite.org/rescode.html).
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_NOMEM = 7
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_NOTADB = 26

_HINTS = {
    SQLITE_FULL: "disk full (no space left for the database or its WAL); committed rows are kept",
    SQLITE_CORRUPT: "database file is corrupt (move it aside to start a fresh store)",
    SQLITE_NOTADB: "file is not an SQLite database (corrupt or foreign file)",
    SQLITE_BUSY: "database is locked by another process (busy timeout expired)",
    SQLITE_LOCKED: "database table is locked",
    SQLITE_READONLY: "database is read-only (check file and directory permissions)",
    SQLITE_CANTOPEN: "cannot open the database file (missing directory or permissions)",
    SQLITE_IOERR: "I/O error on the storage device",
    SQLITE_NOMEM: "out of memory",
}


def primary_code(exc: sqlite3.Error) -> int | None:
    """The primary SQLite result code of an exception, or ``None`` when unknown."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def describe(exc: sqlite3.Error, path: Path, action: str) -> StoreError:
    """A StoreError for ``exc`` raised while doing ``action`` on the store at ``path``."""
    code = primary_code(exc)
    hint = _HINTS.get(code) if code is not None else None
    if hint is None:
        text = str(exc).lower()
        if "disk is full" in text:
            hint = _HINTS[SQLITE_FULL]
        elif "malformed" in text:
            hint = _HINTS[SQLITE_CORRUPT]
        elif "not a database" in text:
            hint = _HINTS[SQLITE_NOTADB]
        else:
            hint = "database error"
    return StoreError(f"store {path}: {action} failed: {hint} ({exc})")


@contextmanager
def translated(path: Path, action: str) -> Iterator[None]:
    """Re-raise sqlite3 and OS errors inside the block as StoreError (chained)."""
    try:
        yield
    except sqlite3.Error as exc:
        err = describe(exc, path, action)
        logger.debug("%s", err)
        raise err from exc
    except OSError as exc:
        raise StoreError(f"store {path}: {action} failed: {exc}") from exc
