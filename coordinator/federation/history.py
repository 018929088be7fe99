"""``runs/<run-id>/history.json``: what happened in each round, rewritten atomically per round.

    {"run_id": "...", "status": "running|completed|failed", "settings": {...}, "started": ts,
     "finished": ts|null, "error": str|null,
     "rounds": [{"round": 1, "duration_s": 14.2,
                 "train": {"loss": ..., "metric": ..., ...},      # aggregated (weighted)
                 "evaluate": {"loss": ..., "metric": ...},         # federated evaluation
                 "central": {"loss": ..., "metric": ...},          # coordinator's validation
                 "selected": [node ids], "skipped": {node id: reason},
                 "failures": 0, "bytes_sent": ..., "bytes_received": ...,
                 "phases": {"train": {...}, "evaluate": {...}},
                 "update_norm": ...,                               # L2, trained arrays
                 # privacy runs only (docs/privacy.md):
                 "updates": {"received": [...], "clipped": [...], "frozen_max_change": 0.0},
                 "privacy": {"central_dp": {"epsilon": ..., "delta": ..., ...},
                             "local_dp": {"epsilon_round": ..., "epsilon": ..., ...}},
                 "secure_aggregation": {"num_shares": ..., "stages": [...], ...}}],
     "model": {"spec": {...}, "arrays": [[shape]...], "frozen_arrays": [indices]}, ...}

The dashboard and ``orchard-coordinator runs`` read it; the demo's progress display polls it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class History:
    path: Path
    run_id: str
    settings: dict[str, Any]
    rounds: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"
    started: float = field(default_factory=time.time)
    finished: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def add_round(self, record: dict[str, Any]) -> None:
        self.rounds.append(record)
        self.save()

    def finish(self, status: str, error: str | None = None) -> None:
        self.status, self.error, self.finished = status, error, time.time()
        self.save()

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "settings": self.settings,
            "started": self.started,
            "finished": self.finished,
            "error": self.error,
            "rounds": self.rounds,
            **self.extra,
        }

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, default=_plain))
        os.replace(tmp, self.path)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def load(path: Path) -> dict[str, Any] | None:
    """A history file, or None while it does not exist or is being replaced."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
