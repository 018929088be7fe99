"""Model outputs ``(N, outputs)`` to JSON results, by task (docs/architecture.md, HTTP)."""

from __future__ import annotations

from typing import Any

import numpy as np

from models.manifest import Manifest
from models.spec import Task


def format_results(manifest: Manifest, out: np.ndarray) -> list[dict[str, Any]]:
    rows: list[list[float]] = out.reshape(out.shape[0], -1).tolist()
    task = manifest.task
    if task is Task.CLASSIFY:
        labels = manifest.labels or tuple(str(i) for i in range(len(rows[0])))
        return [
            {"label": labels[row.index(max(row))], "scores": dict(zip(labels, row, strict=False))}
            for row in rows
        ]
    if task is Task.ANOMALY:
        t = manifest.threshold
        return [
            {"score": row[0], "threshold": t, "anomaly": None if t is None else row[0] > t}
            for row in rows
        ]
    names = manifest.outputs or tuple(f"y{i}" for i in range(len(rows[0])))
    return [{"values": dict(zip(names, row, strict=False))} for row in rows]
