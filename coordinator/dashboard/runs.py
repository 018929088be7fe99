"""The dashboard's view of ``runs/<run-id>/history.json`` (read through :class:`RunHistory`).

A file being rewritten, truncated or from another version must not break the page: anything
unreadable is dropped and ``error`` says what went wrong.

``charts`` says which round metrics the page draws (x is the round) and the y-axis label of
each, with its unit. Only metrics are charted: sample counts (``num-examples``, ``examples``)
and flags (``installed``, ``personalized``) are not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from coordinator.federation.history import METRIC_GROUPS, HistoryError, RunHistory, load

HISTORY = "history.json"


@dataclass(frozen=True)
class Chart:
    """One training chart: the history key, the chart's title and its y-axis label."""

    key: str
    title: str
    y_label: str


# What the history's generic "metric" is, by the model's task (models.training.metric_name).
# An anomaly model reports its loss again as "metric": not charted twice.
_METRIC = {
    "classify": ("Accuracy", "accuracy (0-1)"),
    "regress": ("MAE", "MAE (target units)"),
    "forecast": ("MAE", "MAE (target units)"),
}
_UNKNOWN_METRIC = ("Metric", "accuracy (0-1) or MAE")


def charts_for(task: str | None) -> tuple[Chart, ...]:
    """The training charts a run of ``task`` can have, in page order."""
    name, label = _METRIC.get(task or "", _UNKNOWN_METRIC)
    charts = (
        Chart("loss", "Loss", "loss"),
        Chart("metric", name, label),
        Chart("val_loss", "Loss, local validation", "loss"),
        Chart("val_metric", f"{name}, local validation", label),
        Chart("personal_loss", "Loss, personalised model", "loss"),
        Chart("personal_metric", f"{name}, personalised model", label),
        Chart("accuracy", "Accuracy", "accuracy (0-1)"),  # histories that name their metric
        Chart("mae", "MAE", "MAE (target units)"),
        Chart("duration_s", "Training time per device", "time (s)"),
        Chart("peak_rss_mb", "Trainer peak memory", "memory (MB)"),
    )
    if task == "anomaly":
        return tuple(c for c in charts if not c.key.endswith("metric"))
    return charts


def _task(path: Path) -> str | None:
    """``model.spec.task`` of a history document, if it says."""
    doc = load(path)
    model = doc.get("model") if doc else None
    spec = model.get("spec") if isinstance(model, dict) else None
    task = spec.get("task") if isinstance(spec, dict) else None
    return task if isinstance(task, str) else None


def read_history(path: Path) -> dict[str, Any]:
    """``{"run_id", "rounds", "charts", "error"}`` from one history file."""
    try:
        history = RunHistory.read(path)
    except HistoryError as exc:
        return {"run_id": path.parent.name, "rounds": [], "charts": [], "error": str(exc)}
    rounds = [r.to_dict() for r in history.rounds]
    present = {key for r in rounds for group in METRIC_GROUPS for key in r[group]}
    dropped = history.dropped
    return {
        "run_id": history.run_id,
        "rounds": rounds,
        "charts": [asdict(c) for c in charts_for(_task(path)) if c.key in present],
        "error": f"{dropped} malformed round(s) skipped" if dropped else None,
    }


def latest_history(runs_dir: Path | None) -> dict[str, Any]:
    """The most recently written run under ``runs_dir`` (by the history file's mtime)."""
    empty: dict[str, Any] = {"run_id": None, "rounds": [], "charts": [], "error": None}
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
