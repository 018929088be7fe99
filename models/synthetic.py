"""Small learnable synthetic tasks for every family (numpy only, seeded).

Used by the tests, the smoke run and ``benchmarks/models.py``. Real device data comes from the
agent's store; these exist so every family and quantisation can be exercised anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.errors import SpecError
from models.spec import InputSpec, ModelSpec, Task

ENV_FEATURES = ("temp_c", "humidity_pct", "pressure_hpa", "light_lux", "co2_ppm")
ENV_UNITS = ("°C", "%", "hPa", "lx", "ppm")
ROOM_LABELS = ("empty", "occupied", "ventilating")


@dataclass(frozen=True)
class Dataset:
    spec: ModelSpec
    x: np.ndarray
    y: np.ndarray | None

    def split(self, held: float = 0.2) -> tuple[Dataset, Dataset]:
        n = int(len(self.x) * (1 - held))
        y_tr = None if self.y is None else self.y[:n]
        y_te = None if self.y is None else self.y[n:]
        return Dataset(self.spec, self.x[:n], y_tr), Dataset(self.spec, self.x[n:], y_te)


def _rooms(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Environmental rows in real units; the room state shifts light, CO2 and temperature."""
    y = rng.integers(0, len(ROOM_LABELS), n).astype(np.int32)
    base = np.array([21.0, 45.0, 1013.0, 120.0, 450.0])
    shift = np.array(
        [[0.0, 0.0, 0.0, 0.0, 0.0], [1.5, 4.0, 0.0, 280.0, 420.0], [-2.0, -8.0, 0.5, 60.0, -60.0]]
    )
    noise = np.array([0.8, 4.0, 3.0, 70.0, 90.0])
    x = base + shift[y] + rng.normal(size=(n, 5)) * noise
    return x.astype(np.float32), y


def make(family: str, task: str | Task, n: int = 600, seed: int = 0, side: int = 12) -> Dataset:
    """A dataset for ``family``/``task`` with ``n`` examples."""
    task = Task.parse(task)
    rng = np.random.default_rng(seed)
    if family == "mlp" and task is Task.CLASSIFY:
        x, y = _rooms(n, rng)
        spec = ModelSpec(
            "mlp", task, InputSpec.tabular(ENV_FEATURES, ENV_UNITS), labels=ROOM_LABELS
        )
        return Dataset(spec, x, y)
    if family == "mlp" and task is Task.REGRESS:
        x, _ = _rooms(n, rng)
        # Apparent temperature-like target from temperature, humidity and CO2.
        target = x[:, 0] + 0.05 * x[:, 1] + 0.002 * x[:, 4] + rng.normal(size=n) * 0.1
        spec = ModelSpec(
            "mlp", task, InputSpec.tabular(ENV_FEATURES, ENV_UNITS), outputs=("comfort_c",)
        )
        return Dataset(spec, x, target[:, None].astype(np.float32))
    if family == "cnn1d":
        window, channels = 32, 3
        t = np.arange(window + 1)[None, :, None]
        phase = rng.uniform(0, 2 * np.pi, (n, 1, channels))
        period = rng.choice([8.0, 16.0], size=(n, 1, 1))
        sig = np.sin(2 * np.pi * t / period + phase) * 2.0 + 20.0
        sig = sig + rng.normal(size=sig.shape) * 0.1
        names = ("temp_c", "vibration_g", "current_a")
        if task is Task.CLASSIFY:
            spec = ModelSpec(
                "cnn1d", task, InputSpec.windowed(names, window), labels=("slow", "fast")
            )
            y = (period[:, 0, 0] == 8.0).astype(np.int32)
            return Dataset(spec, sig[:, :window].astype(np.float32), y)
        if task is Task.FORECAST:
            spec = ModelSpec("cnn1d", task, InputSpec.windowed(names, window))
            return Dataset(
                spec, sig[:, :window].astype(np.float32), sig[:, window].astype(np.float32)
            )
    if family == "tiny_cnn" and task is Task.CLASSIFY:
        y = rng.integers(0, 4, n).astype(np.int32)
        img = rng.normal(size=(n, side, side)) * 10 + 40
        h = side // 2
        for i, q in enumerate(y):
            r, c = divmod(int(q), 2)
            img[i, r * h : (r + 1) * h, c * h : (c + 1) * h] += 120
        spec = ModelSpec(
            "tiny_cnn", task, InputSpec.image(side, side), labels=("nw", "ne", "sw", "se")
        )
        return Dataset(spec, img[..., None].astype(np.float32), y)
    if family == "autoencoder" and task is Task.ANOMALY:
        x, _ = _rooms(n, rng)
        x[:, 4] = 400 + (x[:, 0] - 21.0) * 80 + rng.normal(size=n) * 20  # CO2 follows temperature
        spec = ModelSpec("autoencoder", task, InputSpec.tabular(ENV_FEATURES, ENV_UNITS))
        return Dataset(spec, x, None)
    raise SpecError(
        f"expected a synthetic task for family {family!r}. Received: task={task.value!r} "
        "(known: mlp classify/regress, cnn1d classify/forecast, tiny_cnn classify, "
        "autoencoder anomaly)"
    )
