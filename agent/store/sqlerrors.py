"""Translating sqlite3 exceptions into :class:`agent.errors.StoreError` at the boundary.

Messages say what failed, on which file, and what a user can do: "disk full", "corrupt",
"locked", "read-only", "cannot open".

SQLite reports a full disk (``ENOSPC``) as ``SQLITE_FULL``, but a write refused for another
lack of room, such as the file size limit (``RLIMIT_FSIZE``, systemd's ``LimitFSIZE=``:
``EFBIG``), only as an I/O error; for those :func:`no_space` looks at the free space and the
limit, so the message still says "disk full" when that is the cause.
"""

from __future__ import annotations

import logging
import os
import resource
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.errors import StoreError
from agent.store.schema import PAGE_SIZE

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

#: Free space under which an I/O error on write is taken for a full disk.
LOW_SPACE_BYTES = 16 * PAGE_SIZE
#: A WAL frame: one page and its header; a file that cannot grow by one is full.
FRAME_BYTES = PAGE_SIZE + 24
FULL = "disk full"
KEPT = "committed rows are kept"

_HINTS = {
    SQLITE_FULL: f"{FULL} (no space left for the database or its WAL); {KEPT}",
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


def no_space(path: Path) -> str | None:
    """Why a write to the store at ``path`` may lack room (free space, file size limit)."""
    try:
        st = os.statvfs(path.parent)
    except OSError:
        st = None
    if st is not None and st.f_bavail * st.f_frsize < LOW_SPACE_BYTES:
        return f"no space left on the device, {st.f_bavail * st.f_frsize} bytes free"
    soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft == resource.RLIM_INFINITY:
        return None
    for name in (path.name, f"{path.name}-wal", f"{path.name}-journal"):
        try:
            size = os.path.getsize(path.with_name(name))
        except OSError:
            continue
        if size + FRAME_BYTES > soft:
            return f"no space: {name} reached the file size limit (RLIMIT_FSIZE = {soft} bytes)"
    return None


def describe(exc: sqlite3.Error, path: Path, action: str) -> StoreError:
    """A StoreError for ``exc`` raised while doing ``action`` on the store at ``path``."""
    code = primary_code(exc)
    hint = _HINTS.get(code) if code is not None else None
    if code == SQLITE_IOERR and (reason := no_space(path)) is not None:
        hint = f"{FULL} ({reason}); {KEPT}"
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
