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

The ServerApp writes it (:class:`History`, one writer, atomic replace). Readers (the dashboard,
``orchard-coordinator runs``, the plots, the progress display) read it through
:class:`RunHistory` and :class:`RoundSummary`, which keep what they show: a file being rewritten,
truncated or from another version never breaks them (a malformed round is dropped and counted,
a metric that is not a finite number is dropped).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coordinator.errors import CoordinatorError

METRIC_GROUPS = ("train", "evaluate", "central")


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


def raw_rounds(doc: Mapping[str, Any] | None) -> list[Any]:
    """The round records of a loaded history document, as written (decode each with
    :meth:`RoundSummary.decode`); empty while there is none."""
    rounds = doc.get("rounds") if doc else None
    return rounds if isinstance(rounds, list) else []


def run_error(doc: Mapping[str, Any] | None) -> str:
    """Why the ServerApp ended the run, as it wrote it ("" when it did not say)."""
    error = doc.get("error") if doc else None
    return str(error) if error else ""


class HistoryError(CoordinatorError):
    """A history document or round that cannot be read; names the field."""


@dataclass(frozen=True)
class RoundSummary:
    """What readers show of one round; metric groups are empty when absent."""

    round: int
    train: Mapping[str, float] = field(default_factory=dict)
    evaluate: Mapping[str, float] = field(default_factory=dict)
    central: Mapping[str, float] = field(default_factory=dict)
    selected: tuple[str, ...] = ()
    skipped: Mapping[str, str] = field(default_factory=dict)
    failures: int = 0
    duration_s: float | None = None

    @classmethod
    def decode(cls, raw: Any) -> RoundSummary:
        """Raises :class:`HistoryError` unless ``raw`` is a round object with its number."""
        if not isinstance(raw, Mapping):
            raise HistoryError(f"history round: expected an object. Received: {raw!r:.80}")
        number = raw.get("round")
        if isinstance(number, bool) or not isinstance(number, int):
            raise HistoryError(
                f"history round: expected round to be an integer. Received: round={number!r:.40}"
            )
        selected, skipped, failures = raw.get("selected"), raw.get("skipped"), raw.get("failures")
        return cls(
            round=number,
            train=_metrics(raw.get("train")),
            evaluate=_metrics(raw.get("evaluate")),
            central=_metrics(raw.get("central")),
            selected=tuple(str(s) for s in selected) if isinstance(selected, list) else (),
            skipped=(
                {str(k): str(v) for k, v in skipped.items()} if isinstance(skipped, dict) else {}
            ),
            failures=failures
            if isinstance(failures, int) and not isinstance(failures, bool)
            else 0,
            duration_s=_number(raw.get("duration_s")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            **{group: dict(getattr(self, group)) for group in METRIC_GROUPS},
            "selected": list(self.selected),
            "skipped": dict(self.skipped),
            "failures": self.failures,
            "duration_s": self.duration_s,
        }


@dataclass(frozen=True)
class RunHistory:
    """What readers show of a run: its rounds in order and how many were malformed."""

    run_id: str
    status: str
    strategy: str
    started: float
    rounds: tuple[RoundSummary, ...] = ()
    initial_central: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None
    dropped: int = 0

    @classmethod
    def decode(cls, doc: Any, run_id: str = "") -> RunHistory:
        """Raises :class:`HistoryError` unless ``doc`` is an object with a ``rounds`` list."""
        if not isinstance(doc, Mapping) or not isinstance(doc.get("rounds"), list):
            raise HistoryError("history: expected an object with a 'rounds' list")
        rounds = []
        for raw in doc["rounds"]:
            try:
                rounds.append(RoundSummary.decode(raw))
            except HistoryError:
                continue
        named, settings = doc.get("run_id"), doc.get("settings")
        started, error = _number(doc.get("started")), doc.get("error")
        return cls(
            run_id=named if isinstance(named, str) and named else run_id,
            status=str(doc.get("status", "unknown")),
            strategy=str(settings.get("strategy", "?")) if isinstance(settings, dict) else "?",
            started=started or 0.0,
            rounds=tuple(sorted(rounds, key=lambda r: r.round)),
            initial_central=_metrics(doc.get("initial_central")),
            error=error if isinstance(error, str) else None,
            dropped=len(doc["rounds"]) - len(rounds),
        )

    @classmethod
    def read(cls, path: Path) -> RunHistory:
        """``path`` decoded; :class:`HistoryError` says why it cannot be (missing, unreadable)."""
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise HistoryError(f"{path} does not exist") from None
        except (OSError, ValueError) as exc:
            raise HistoryError(f"{path} is unreadable: {exc}") from None
        try:
            return cls.decode(doc, run_id=path.parent.name)
        except HistoryError:
            raise HistoryError(f"{path} has no 'rounds' list") from None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _metrics(value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        return {}
    out = {}
    for key, item in value.items():
        number = _number(item)
        if isinstance(key, str) and number is not None:
            out[key] = number
    return out
