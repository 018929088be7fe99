"""CSV data sets on the coordinator: central validation sets and the demo's partitions.

A CSV has a header. Feature columns are named as the model's inputs (``temp_c``, ...); a
``label`` column holds the class for classification; an optional ``ts`` column holds Unix
seconds (rows are otherwise taken as consecutive samples). Rows with a missing or non-numeric
feature are skipped and counted, never guessed.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coordinator.errors import CoordinatorError
from models.spec import ModelSpec, Task


class DataError(CoordinatorError):
    pass


@dataclass(frozen=True)
class Table:
    """Rows of a CSV: ``values`` (N, F) float32 in ``features`` order, ``labels`` or None."""

    features: tuple[str, ...]
    values: np.ndarray
    labels: np.ndarray | None
    ts: np.ndarray | None
    skipped: int = 0

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def take(self, index: np.ndarray) -> Table:
        return Table(
            self.features,
            self.values[index],
            None if self.labels is None else self.labels[index],
            None if self.ts is None else self.ts[index],
        )


def read_csv(path: Path, features: Sequence[str] | None = None) -> Table:
    """Read ``path``; ``features`` None = every numeric column except ``label`` and ``ts``."""
    try:
        with Path(path).open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = list(reader)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if not header:
        raise DataError(f"expected a CSV with a header row. Received: {path} with no header")
    names = tuple(features) if features else tuple(h for h in header if h not in ("label", "ts"))
    missing = [n for n in names if n not in header]
    if missing:
        raise DataError(
            f"expected columns {list(names)} in {path}. Received: columns={header} "
            f"(missing {missing})"
        )
    values, labels, ts, skipped = [], [], [], 0
    for row in rows:
        try:
            vec = [float(row[n]) for n in names]
        except (TypeError, ValueError):
            skipped += 1
            continue
        if not all(math.isfinite(v) for v in vec):
            skipped += 1
            continue
        values.append(vec)
        labels.append(str(row.get("label") or "").strip())
        ts.append(float(row["ts"]) if row.get("ts") else math.nan)
    if not values:
        raise DataError(f"expected numeric rows for {list(names)} in {path}. Received: none usable")
    has_labels = "label" in header
    ts_arr = np.array(ts, np.float64)
    return Table(
        names,
        np.array(values, np.float32),
        np.array(labels) if has_labels else None,
        ts_arr if "ts" in header and np.isfinite(ts_arr).all() else None,
        skipped,
    )


def write_csv(path: Path, table: Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        extra = (["label"] if table.labels is not None else []) + (
            ["ts"] if table.ts is not None else []
        )
        w.writerow([*table.features, *extra])
        for i in range(len(table)):
            row: list[object] = [f"{v:.9g}" for v in table.values[i]]  # float32 exactly
            if table.labels is not None:
                row.append(table.labels[i])
            if table.ts is not None:
                row.append(f"{table.ts[i]:.3f}")
            w.writerow(row)


def arrays_for(spec: ModelSpec, table: Table) -> tuple[np.ndarray, np.ndarray | None]:
    """``(x, y)`` for ``spec`` from a table (windows for windowed inputs)."""
    names = spec.input.feature_names
    idx = [table.features.index(n) for n in names]
    x = table.values[:, idx]
    window = spec.input.window
    if spec.task is Task.CLASSIFY:
        if table.labels is None:
            raise DataError("expected a 'label' column for a classification model")
        index = {name: i for i, name in enumerate(spec.labels)}
        keep = np.array([lab in index for lab in table.labels])
        if window is None:
            return x[keep], np.array([index[v] for v in table.labels[keep]], np.int32)
        xs = _windows(x, window)
        labs = table.labels[window - 1 :]
        keep = keep[window - 1 :]
        return xs[keep], np.array([index[v] for v in labs[keep]], np.int32)
    if spec.task is Task.FORECAST:
        assert window is not None
        xs = _windows(x[:-1], window)
        return xs, x[window:]
    if spec.task is Task.REGRESS:
        out_idx = [table.features.index(n) for n in spec.outputs]
        return x, table.values[:, out_idx]
    return (x if window is None else _windows(x, window)), None


def _windows(x: np.ndarray, window: int) -> np.ndarray:
    if len(x) < window:
        return np.zeros((0, window, x.shape[1]), np.float32)
    return np.lib.stride_tricks.sliding_window_view(x, window, axis=0).transpose(0, 2, 1).copy()
