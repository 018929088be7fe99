"""The dashboard's view of ``runs/<run-id>/history.json`` (read through :class:`RunHistory`).

A file being rewritten, truncated or from another version must not break the page: anything
unreadable is dropped and ``error`` says what went wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coordinator.federation.history import HistoryError, RunHistory

HISTORY = "history.json"


def read_history(path: Path) -> dict[str, Any]:
    """``{"run_id", "rounds", "error"}`` from one history file."""
    try:
        history = RunHistory.read(path)
    except HistoryError as exc:
        return {"run_id": path.parent.name, "rounds": [], "error": str(exc)}
    dropped = history.dropped
    return {
        "run_id": history.run_id,
        "rounds": [r.to_dict() for r in history.rounds],
        "error": f"{dropped} malformed round(s) skipped" if dropped else None,
    }


def latest_history(runs_dir: Path | None) -> dict[str, Any]:
    """The most recently written run under ``runs_dir`` (by the history file's mtime)."""
    empty: dict[str, Any] = {"run_id": None, "rounds": [], "error": None}
    if runs_dir is None or not runs_dir.is_dir():
        return empty
    candidates = []
    for child in runs_dir.iterdir():
        history = child / HISTORY
        try:
            candidates.append((history.stat().st_mtime, history))
        except OSError:
            continue
    if not candidates:
        return empty
    return read_history(max(candidates)[1])
