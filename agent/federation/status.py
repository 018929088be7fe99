"""The trainer's status file: one small JSON document several processes read and update.

Written by the trainer (progress and outcomes), by the agent's trainer supervisor (a kill over
budget) and by the ClientApp (a closed gate); read by the agent for ``/healthz`` and health
messages. Updates replace the file atomically, so a reader never sees half a document.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, Any] = {
    "state": "idle",  # idle | starting | training | evaluating | exporting | stopped
    "run_id": None,
    "round": None,
    "last_duration_s": None,
    "peak_rss_mb": None,
    "last_outcome": None,  # ok | gate_closed | over_memory | over_time | error
    "last_reason": None,
    "failures_in_row": 0,
    "pid": None,
    "updated": None,
}


def read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return dict(DEFAULTS)
    return {**DEFAULTS, **data} if isinstance(data, dict) else dict(DEFAULTS)


def update(path: Path, **changes: Any) -> dict[str, Any]:
    """Merge ``changes`` into the file; an ``outcome`` also counts failures in a row."""
    data = read(path)
    outcome = changes.get("last_outcome")
    if outcome is not None:
        data["failures_in_row"] = 0 if outcome == "ok" else int(data["failures_in_row"]) + 1
    data.update(changes, updated=time.time())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, path)
    return data


def path_for(state_dir: Path) -> Path:
    """Where the trainer's status file of an agent with ``state_dir`` lives."""
    return state_dir / "trainer" / "status.json"
