"""``orchard-coordinator runs`` and ``predict``: read what runs left behind."""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coordinator.errors import CoordinatorError
from coordinator.federation.history import HistoryError, RunHistory
from models.runtime import Predictor


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    status: str
    strategy: str
    rounds: int
    central: str
    devices: str
    started: str


def summaries(runs_dir: Path) -> list[RunSummary]:
    rows = []
    for path in sorted(runs_dir.glob("*/history.json"), key=lambda p: p.stat().st_mtime):
        try:
            history = RunHistory.read(path)
        except HistoryError:
            continue
        last = history.rounds[-1] if history.rounds else None
        central = None if last is None else (last.central or last.evaluate).get("metric")
        rows.append(
            RunSummary(
                run_id=history.run_id,
                status=history.status,
                strategy=history.strategy,
                rounds=len(history.rounds),
                central="-" if central is None else f"{central:.3f}",
                devices=str(len(last.selected)) if last else "-",
                started=time.strftime("%Y-%m-%d %H:%M", time.localtime(history.started)),
            )
        )
    return rows


def _inputs(path: Path, predictor: Predictor) -> np.ndarray:
    names = predictor.manifest.input.feature_names
    if path.suffix.lower() == ".json":
        try:
            body = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CoordinatorError(f"cannot read {path}: {exc}") from exc
        field = "instances" if isinstance(body, dict) and "instances" in body else "features"
        data = body.get(field) if isinstance(body, dict) else body
        return predictor.as_batch(data, field=field)
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [n for n in names if n not in (reader.fieldnames or [])]
        if missing:
            raise CoordinatorError(
                f"expected columns {list(names)} in {path}. Received: {reader.fieldnames} "
                f"(missing {missing})"
            )
        rows = [[row[n] for n in names] for row in reader]
    try:
        return predictor.as_batch(np.array(rows, dtype=np.float32), field="instances")
    except ValueError as exc:
        raise CoordinatorError(f"{path}: expected numbers in {list(names)}: {exc}") from exc


def predict_file(bundle: Path, inputs: Path) -> list[str]:
    predictor = Predictor.load(bundle)
    m = predictor.manifest
    out = predictor.predict(_inputs(inputs, predictor))
    lines = [f"model {m.name} {m.version} ({m.task.value}, {m.quantization})"]
    for i, row in enumerate(np.atleast_2d(out)):
        if m.labels:
            k = int(np.argmax(row))
            lines.append(f"{i}: {m.labels[k]} ({float(row[k]):.3f})")
        elif m.threshold is not None:
            flag = "anomaly" if float(row[0]) > m.threshold else "normal"
            lines.append(f"{i}: {flag} (score {float(row[0]):.4g}, threshold {m.threshold:.4g})")
        else:
            lines.append(
                f"{i}: "
                + ", ".join(f"{n}={float(v):.4g}" for n, v in zip(m.outputs, row, strict=False))
            )
    return lines
