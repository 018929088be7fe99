"""The demo's data: the synthetic fleet generator, or any CSV (``csv:PATH``).

A prepared data set is one table to partition across devices, a held-out table for the
coordinator's central evaluation, the model spec for the task, and the live sensor each agent
runs (the synthetic driver with that device's profile, or a replay of its own partition).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from coordinator.data import DataError, Table, read_csv, write_csv
from models import rooms as synthetic
from models.spec import InputSpec, ModelSpec, Task

if TYPE_CHECKING:
    from coordinator.demo.fleet import Device

ROWS_PER_DEVICE = 900
HELD_OUT = 0.15
WINDOW = 16
TASKS = ("classify", "anomaly", "forecast")


@dataclass(frozen=True)
class Prepared:
    train: Table
    validation: Table
    spec: ModelSpec
    describe: str
    live_sensor: Callable[[Device, Table], dict[str, Any]]


def prepare(data: str, task: str, devices: int, seed: int = 0) -> Prepared:
    if task not in TASKS:
        raise DataError(f"expected a task among {', '.join(TASKS)}. Received: task={task!r}")
    if data == "synthetic":
        table = _synthetic(devices, seed)
        describe = f"synthetic indoor climate (5 features, labels {', '.join(synthetic.LABELS)})"
        live = _synthetic_sensor(seed)
    elif data.startswith("csv:"):
        path = Path(data[4:]).expanduser()
        table = read_csv(path)
        labelled = ", labelled" if table.labels is not None else ""
        describe = f"{path} ({len(table.features)} features{labelled})"
        live = _replay_sensor
    else:
        raise DataError(f"expected 'synthetic' or 'csv:PATH'. Received: data={data!r}")
    spec = _spec(task, table)
    if task == "classify":
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(table))
    else:  # time series: hold out the newest stretch, keep order
        order = np.arange(len(table))
    n_val = int(len(table) * HELD_OUT)
    val_idx, train_idx = np.sort(order[-n_val:]), np.sort(order[:-n_val])
    return Prepared(table.take(train_idx), table.take(val_idx), spec, describe, live)


def write_validation(path: Path, table: Table) -> None:
    write_csv(path, table)


def _spec(task: str, table: Table) -> ModelSpec:
    names = table.features
    if task == "classify":
        if table.labels is None:
            raise DataError("expected a 'label' column for --task classify")
        labels = tuple(sorted({str(v) for v in table.labels if str(v)}))
        return ModelSpec("mlp", Task.CLASSIFY, InputSpec.tabular(names), labels=labels)
    if task == "anomaly":
        return ModelSpec("autoencoder", Task.ANOMALY, InputSpec.tabular(names))
    return ModelSpec("cnn1d", Task.FORECAST, InputSpec.windowed(names, WINDOW))


def _synthetic(devices: int, seed: int) -> Table:
    xs, labels, ts = [], [], []
    for i in range(devices):
        d = synthetic.generate(ROWS_PER_DEVICE, seed=seed, device_index=i, step_s=60.0)
        xs.append(d.x)
        labels.append(np.array(synthetic.LABELS)[d.y])
        ts.append(d.ts)
    return Table(synthetic.FEATURE_NAMES, np.concatenate(xs), np.concatenate(labels), None)


def _synthetic_sensor(seed: int) -> Callable[[Device, Table], dict[str, Any]]:
    def sensor(device: Device, part: Table) -> dict[str, Any]:
        return {
            "driver": "synthetic",
            "interval_s": 1.0,
            "seed": seed,
            "device_index": device.index,
        }

    return sensor


def _replay_sensor(device: Device, part: Table) -> dict[str, Any]:
    return {
        "driver": "csv",
        "path": str(device.partition_csv(part)),
        "interval_s": 1.0,
        "speed": 60.0,
        "loop": True,
    }
