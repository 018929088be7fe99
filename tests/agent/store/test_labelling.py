"""Labels set on stored samples (``match_samples``, ``label_samples``) and the time of the
newest row a prediction reads (``latest_window_at``), run against both stores."""

from __future__ import annotations

import numpy as np
import pytest

from agent.errors import StoreError
from agent.store.base import SampleLabel
from agent.types import Sample
from tests.agent.store.conftest import StoreFactory, ramp


def test_latest_window_at_gives_the_newest_rows_time(make_store: StoreFactory) -> None:
    store = make_store()
    assert store.latest_window_at(["a"], 2) is None
    store.append_many(ramp(5, start=100.0))
    store.append(Sample(ts=200.0, values={"a": float("nan"), "b": 1.0}))  # incomplete: skipped
    found = store.latest_window_at(["a", "b"], 2)
    assert found is not None
    window, ts = found
    np.testing.assert_array_equal(window, [[3, 30], [4, 40]])
    assert ts == 104.0
    np.testing.assert_array_equal(store.latest_window(["a", "b"], 2), window)


def test_match_samples_takes_the_newest_at_or_before_within_the_tolerance(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    store.append_many(ramp(3, start=100.0, step=10.0))  # 100, 110, 120
    assert store.match_samples([100.0, 109.9, 115.0, 125.0, 99.0, 131.0], tolerance_s=5.0) == [
        100.0,
        None,
        110.0,
        120.0,
        None,
        None,
    ]
    assert store.match_samples([], tolerance_s=0.0) == []
    for bad in (float("nan"), -1.0):
        with pytest.raises(StoreError, match="tolerance_s: expected"):
            store.match_samples([100.0], tolerance_s=bad)
    with pytest.raises(StoreError, match=r"stamps\[0\]: expected a finite number"):
        store.match_samples([float("inf")], tolerance_s=1.0)


def test_a_class_label_reaches_the_dataset(make_store: StoreFactory) -> None:
    store = make_store()
    store.append_many(ramp(4, start=100.0))
    assert store.label_samples([SampleLabel(101.0, "hot"), SampleLabel(103.0, "cold")]) == 2
    ds = store.dataset(["a"], labels=True)
    assert ds.ts.tolist() == [101.0, 103.0] and ds.labels is not None
    assert ds.labels.tolist() == ["hot", "cold"]
    np.testing.assert_array_equal(ds.x[:, 0], [1, 3])
    assert store.label_samples([SampleLabel(101.0, "warm")]) == 1  # a correction replaces
    assert store.dataset(["a"], labels=True).labels.tolist() == ["warm", "cold"]  # type: ignore[union-attr]
    assert store.label_samples([SampleLabel(102.5, "x")]) == 0  # no row there: skipped


def test_values_become_regression_targets_and_keep_the_label(make_store: StoreFactory) -> None:
    store = make_store()
    store.append_many(ramp(3, start=100.0, label="seen"))
    assert store.label_samples([SampleLabel(101.0, values={"target": 7.5, "b": -1.0})]) == 1
    ds = store.dataset(["a", "b", "target"], labels=True)
    assert ds.ts.tolist() == [101.0] and ds.labels.tolist() == ["seen"]  # type: ignore[union-attr]
    np.testing.assert_array_equal(ds.x, [[1, -1, 7.5]])
    assert "target" in store.features()
    # the other rows and the readers of the original features are untouched
    np.testing.assert_array_equal(store.dataset(["a"]).x[:, 0], [0, 1, 2])
    assert store.stats().rows == 3


def test_a_bad_label_writes_nothing(make_store: StoreFactory) -> None:
    store = make_store()
    store.append_many(ramp(3, start=100.0))
    batch = [SampleLabel(100.0, "ok"), SampleLabel(101.0, values={"t": 1e39})]
    with pytest.raises(StoreError, match="float32 range"):
        store.label_samples(batch)
    with pytest.raises(StoreError, match=r"labels\[1\].label: expected a non-empty string"):
        store.label_samples([SampleLabel(100.0, "ok"), SampleLabel(101.0, "")])
    with pytest.raises(StoreError, match=r"labels\[0\].ts: expected a finite number"):
        store.label_samples([SampleLabel(float("nan"), "ok")])
    ds = store.dataset(["a"], labels=True)
    assert len(ds) == 0 and "t" not in store.features()


def test_the_newest_of_rows_sharing_a_time_is_labelled(make_store: StoreFactory) -> None:
    store = make_store()
    store.append_many([Sample(ts=5.0, values={"a": 1.0}), Sample(ts=5.0, values={"a": 2.0})])
    assert store.label_samples([SampleLabel(5.0, "second")]) == 1
    ds = store.dataset(["a"], labels=True)
    np.testing.assert_array_equal(ds.x[:, 0], [2.0])
