"""Seeded, plausible indoor-environment signals with a learnable occupancy label.

Each row has ``temp_c``, ``humidity_pct``, ``pressure_hpa``, ``light_lux`` and ``co2_ppm`` and
a label: ``empty``, ``occupied`` or ``crowded``. Occupancy raises CO2, light, temperature and
humidity by fixed amounts on top of daily cycles, slow drift, a pressure random walk, noise and
rare injected anomalies, so a small classifier can learn the label from a single row well above
chance. Every device (``seed``, ``device_index``) gets its own offsets, noise level, drift and
label balance, which makes a simulated fleet non-IID.

:func:`generate` makes N rows as numpy arrays without a clock (demo, tests, simulation). The
agent's ``synthetic`` sensor driver (:mod:`agent.sensors.synthetic`) emits one row per
read from :class:`SyntheticSource`; the coordinator's demo uses :func:`generate`. Pure numpy:
both sides import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# name, unit, plausible range (the sensor driver's validation bounds)
FEATURES: tuple[tuple[str, str, float, float], ...] = (
    ("temp_c", "°C", -10.0, 50.0),
    ("humidity_pct", "%", 0.0, 100.0),
    ("pressure_hpa", "hPa", 870.0, 1085.0),
    ("light_lux", "lx", 0.0, 20000.0),
    ("co2_ppm", "ppm", 300.0, 5000.0),
)
FEATURE_NAMES = tuple(name for name, *_ in FEATURES)
LABELS = ("empty", "occupied", "crowded")
# Per label: added temp_c, humidity_pct, light_lux, co2_ppm.
_EFFECT = np.array([[0.0, 0.0, 0.0, 0.0], [0.8, 2.5, 280.0, 380.0], [1.7, 5.0, 420.0, 950.0]])
_NOISE = np.array([0.35, 1.8, 0.25, 40.0, 70.0])  # per feature, before the device's scale
_NIGHT = np.array([2.0, 0.6, 0.3])  # label weight multipliers outside 08:00-20:00
_STAY = 0.9  # chance the occupancy state carries over from one row to the next
_LOW = np.array([low for _, _, low, _ in FEATURES])
_HIGH = np.array([high for _, _, _, high in FEATURES])


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """What makes one simulated device differ from another."""

    temp_offset: float = 0.0
    humidity_offset: float = 0.0
    pressure_offset: float = 0.0
    co2_offset: float = 0.0
    light_scale: float = 1.0
    noise_scale: float = 1.0
    drift_per_day: float = 0.0  # °C per day of sensor drift
    label_balance: tuple[float, float, float] = (0.5, 0.3, 0.2)
    anomaly_rate: float = 0.01

    @classmethod
    def for_device(cls, seed: int, device_index: int) -> DeviceProfile:
        rng = np.random.default_rng([seed, device_index, 0xD1CE])
        balance = rng.dirichlet([2.0, 2.0, 2.0]) * 0.7 + 0.1  # every class keeps >= 10 %
        return cls(
            temp_offset=float(rng.normal(0.0, 1.5)),
            humidity_offset=float(rng.normal(0.0, 6.0)),
            pressure_offset=float(rng.normal(0.0, 8.0)),
            co2_offset=float(rng.normal(0.0, 40.0)),
            light_scale=float(rng.uniform(0.4, 1.6)),
            noise_scale=float(rng.uniform(0.7, 1.4)),
            drift_per_day=float(rng.uniform(-0.05, 0.05)),
            label_balance=(float(balance[0]), float(balance[1]), float(balance[2])),
        )


class SyntheticSource:
    """The stateful generator: occupancy Markov chain, pressure random walk, anomalies."""

    def __init__(self, profile: DeviceProfile, seed: int, device_index: int) -> None:
        self.profile = profile
        self._rng = np.random.default_rng([seed, device_index, 0x5EED])
        self._balance = np.asarray(profile.label_balance, dtype=float)
        self._state = -1
        self._walk = 0.0
        self._start: float | None = None
        self._last: float | None = None

    def row(self, ts: float) -> tuple[np.ndarray, int, bool]:
        """Feature vector (order of :data:`FEATURE_NAMES`), label index, anomaly flag."""
        p = self.profile
        self._start = ts if self._start is None else self._start
        dt = 60.0 if self._last is None else max(ts - self._last, 0.0)
        self._last = ts
        noise = self._rng.standard_normal(6)
        u = self._rng.random(4)
        hour = (ts / 3600.0) % 24.0
        weights = self._balance * (1.0 if 8.0 <= hour < 20.0 else _NIGHT)
        if self._state < 0 or u[0] > _STAY:
            self._state = int(np.searchsorted(np.cumsum(weights / weights.sum()), u[1]))
        self._walk = self._walk * math.exp(-dt / 86400.0) + noise[5] * 0.08 * math.sqrt(dt / 60.0)
        daylight = max(0.0, math.sin(math.pi * (hour - 6.0) / 12.0))
        days = (ts - self._start) / 86400.0
        temp = 21.0 + p.temp_offset + 2.0 * math.cos(2 * math.pi * (hour - 15.0) / 24.0)
        temp += p.drift_per_day * days
        base = np.array(
            [
                temp,
                45.0 + p.humidity_offset - 1.2 * (temp - 21.0 - p.temp_offset),
                1013.0 + p.pressure_offset + self._walk,
                350.0 * p.light_scale * daylight,
                430.0 + p.co2_offset,
            ]
        )
        effect = _EFFECT[self._state]
        base[[0, 1, 3, 4]] += effect
        values = base + noise[:5] * _NOISE * p.noise_scale
        anomaly = bool(u[2] < p.anomaly_rate)
        if anomaly:
            which = int(u[3] * 3)
            values[(0, 1, 4)[which]] += (8.0, 30.0, 2000.0)[which]
        return np.clip(values, _LOW, _HIGH), self._state, anomaly


@dataclass(frozen=True)
class SyntheticData:
    """Rows from :func:`generate`: ``x`` is (n, 5) float32, ``y`` indexes :data:`LABELS`."""

    ts: np.ndarray
    x: np.ndarray
    y: np.ndarray
    anomaly: np.ndarray
    profile: DeviceProfile
    feature_names: tuple[str, ...] = FEATURE_NAMES
    label_names: tuple[str, ...] = LABELS


def generate(
    n: int,
    *,
    seed: int = 0,
    device_index: int = 0,
    start_ts: float = 1_700_000_000.0,
    step_s: float = 300.0,
    profile: DeviceProfile | None = None,
) -> SyntheticData:
    """``n`` rows of one device, ``step_s`` apart from ``start_ts``; same inputs, same rows."""
    if n < 0 or step_s <= 0:
        raise ValueError(f"expected n >= 0 and step_s > 0. Received: n={n}, step_s={step_s}")
    profile = profile or DeviceProfile.for_device(seed, device_index)
    source = SyntheticSource(profile, seed, device_index)
    ts = start_ts + step_s * np.arange(n, dtype=float)
    x = np.empty((n, len(FEATURES)), dtype=np.float32)
    y = np.empty(n, dtype=np.int64)
    anomaly = np.empty(n, dtype=bool)
    for i, t in enumerate(ts):
        x[i], y[i], anomaly[i] = source.row(float(t))
    return SyntheticData(ts=ts, x=x, y=y, anomaly=anomaly, profile=profile)
