"""Synthetic signals: deterministic, plausible, non-IID across devices, label learnable."""

from __future__ import annotations

import numpy as np
import pytest

from agent.errors import ConfigError
from agent.sensors.synthetic import FEATURES, LABELS, SyntheticData, SyntheticDriver, generate

from .conftest import FakeClock


def balanced_accuracy(train: SyntheticData, test: SyntheticData) -> float:
    """Mean per-class recall of a nearest-centroid classifier (chance: 1/3)."""
    mu, sd = train.x.mean(0), train.x.std(0)
    centroids = np.stack([((train.x[train.y == k] - mu) / sd).mean(0) for k in range(3)])
    z = (test.x - mu) / sd
    predicted = ((z[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    return float(np.mean([(predicted[test.y == k] == k).mean() for k in np.unique(test.y)]))


def split(data: SyntheticData, n: int) -> tuple[SyntheticData, SyntheticData]:
    def part(s: slice) -> SyntheticData:
        return SyntheticData(data.ts[s], data.x[s], data.y[s], data.anomaly[s], data.profile)

    return part(slice(None, n)), part(slice(n, None))


def test_same_seed_same_rows_and_shapes() -> None:
    a, b = generate(300, seed=7, device_index=2), generate(300, seed=7, device_index=2)
    assert a.x.shape == (300, 5) and a.y.shape == (300,) and a.x.dtype == np.float32
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert a.feature_names == tuple(f.name for f in FEATURES) and a.label_names == LABELS


def test_values_are_plausible_with_a_daily_cycle() -> None:
    data = generate(288 * 4, seed=1, step_s=300.0)  # four days, 5-minute steps
    for j, feature in enumerate(FEATURES):
        assert feature.low <= data.x[:, j].min() and data.x[:, j].max() <= feature.high
    hours = (data.ts / 3600) % 24
    light = data.x[:, 3]
    assert light[(hours > 11) & (hours < 13)].mean() > 3 * light[(hours < 4)].mean() + 50
    assert 0.0 < data.anomaly.mean() < 0.05


@pytest.mark.parametrize("device", [0, 1, 2, 3])
def test_label_is_learnable_from_one_row(device: int) -> None:
    train, test = split(generate(4000, seed=3, device_index=device), 3000)
    assert balanced_accuracy(train, test) > 0.8


def test_devices_differ_non_iid() -> None:
    a, b = generate(2000, seed=0, device_index=0), generate(2000, seed=0, device_index=1)
    assert a.profile != b.profile
    assert np.abs(np.bincount(a.y, minlength=3) - np.bincount(b.y, minlength=3)).sum() > 200
    assert abs(float(a.x[:, 2].mean() - b.x[:, 2].mean())) > 0.5  # pressure offset


def test_driver_emits_one_labelled_row_per_read(clock: FakeClock) -> None:
    driver = SyntheticDriver.from_config(
        "sim", {"seed": 5, "device_index": 1, "label_balance": [0, 0, 1]}, clock=clock
    )
    rows = []
    for _ in range(20):
        rows += driver.read()
        clock.advance(60)
    assert len(rows) == 20 and all(r.label == "crowded" for r in rows)
    assert rows[0].ts == 1_700_000_000.0 and set(rows[0].values) == {f.name for f in FEATURES}


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"seed": -1}, "sensors.sim.seed"),
        ({"label_balance": [1, 2]}, "sensors.sim.label_balance"),
        ({"anomaly_rate": 0.9}, "sensors.sim.anomaly_rate"),
        ({"noise": 1}, "sensors.sim.noise"),
    ],
)
def test_bad_options(clock: FakeClock, options: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        SyntheticDriver.from_config("sim", options, clock=clock)
    assert info.value.key == key
