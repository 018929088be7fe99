"""Read a run's ``history.json`` for the dashboard, defensively.

The ServerApp writes ``runs/<run-id>/history.json`` while a run goes on::

    {"run_id": "...", "rounds": [{"round": 1, "train": {"loss": 0.9}, "evaluate": {...},
      "central": {...}, "selected": [...], "skipped": {...}, "failures": 0, "duration_s": 4.2}]}

A file being rewritten, truncated or from another version must not break the page: anything
unreadable is dropped and ``error`` says what went wrong; metric values that are not finite
numbers are dropped.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

HISTORY = "history.json"
_METRIC_GROUPS = ("train", "evaluate", "central")


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def _metrics(v: Any) -> dict[str, float]:
    if not isinstance(v, dict):
        return {}
    out = {}
    for key, value in v.items():
        n = _number(value)
        if isinstance(key, str) and n is not None:
            out[key] = n
    return out


def _round(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    number = raw.get("round")
    if isinstance(number, bool) or not isinstance(number, int):
        return None
    selected = raw.get("selected")
    skipped = raw.get("skipped")
    failures = raw.get("failures")
    entry: dict[str, Any] = {"round": number}
    entry.update({group: _metrics(raw.get(group)) for group in _METRIC_GROUPS})
    entry["selected"] = [str(s) for s in selected] if isinstance(selected, list) else []
    entry["skipped"] = (
        {str(k): str(v) for k, v in skipped.items()} if isinstance(skipped, dict) else {}
    )
    entry["failures"] = (
        failures if isinstance(failures, int) and not isinstance(failures, bool) else 0
    )
    entry["duration_s"] = _number(raw.get("duration_s"))
    return entry


def read_history(path: Path) -> dict[str, Any]:
    """``{"run_id", "rounds", "error"}`` from one history file."""
    run_id = path.parent.name
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"run_id": run_id, "rounds": [], "error": f"{path} does not exist"}
    except (OSError, ValueError) as exc:
        return {"run_id": run_id, "rounds": [], "error": f"{path} is unreadable: {exc}"}
    if not isinstance(doc, dict) or not isinstance(doc.get("rounds"), list):
        return {"run_id": run_id, "rounds": [], "error": f"{path} has no 'rounds' list"}
    rounds = [r for r in (_round(raw) for raw in doc["rounds"]) if r is not None]
    dropped = len(doc["rounds"]) - len(rounds)
    named = doc.get("run_id")
    return {
        "run_id": named if isinstance(named, str) and named else run_id,
        "rounds": sorted(rounds, key=lambda r: r["round"]),
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
