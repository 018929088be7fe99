"""What every part of the federated benchmark shares: progress lines, tables, statistics, data."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.machine import describe
from coordinator.data import Table, arrays_for
from coordinator.demo import datasets
from coordinator.demo.partition import Partitioning, split

FLOOR_APP = Path(__file__).resolve().parent.parent / "flower_floor"
BIN = Path(sys.executable).parent
VAL_FRACTION = 0.2  # agent.trainer.data.load: each device validates on its newest 20 %
Say = Callable[[str], None]


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- machine, tables ----------------------------------------------------------------------
def machine() -> str:
    return describe(
        "flwr", "ray", ("tensorflow", "tensorflow-cpu"), "keras", "ai-edge-litert", "numpy"
    )


def table(title: str, header: list[str], rows: list[list[Any]], notes: str = "") -> str:
    lines = [f"\n### {title}\n", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    if notes:
        lines += ["", notes]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q * 100)) if values else float("nan")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- data ---------------------------------------------------------------------------------
def prepare(devices: int, partition: str, seed: int) -> tuple[datasets.Prepared, list[Table]]:
    prepared = datasets.prepare("synthetic", "classify", devices, seed=seed)
    parts = split(prepared.train, devices, Partitioning.parse(partition), seed=seed)
    return prepared, parts


def device_rows(prepared: datasets.Prepared, parts: list[Table]) -> tuple[np.ndarray, np.ndarray]:
    """The rows the devices train on (each partition less its newest 20 %), pooled."""
    xs, ys = [], []
    for part in parts:
        x, y = arrays_for(prepared.spec, part)
        assert y is not None
        keep = len(x) - max(1, int(len(x) * VAL_FRACTION))
        xs.append(x[:keep])
        ys.append(y[:keep])
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys)
