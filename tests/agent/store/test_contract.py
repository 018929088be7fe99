"""Behaviour every Store shares, run against SqliteStore and MemoryStore."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.errors import StoreError
from agent.store.frames import scan_rows
from agent.types import Sample
from tests.agent.store.conftest import FakeClock, StoreFactory, ramp


def test_rows_come_back_as_float32_in_requested_feature_order(make_store: StoreFactory) -> None:
    store = make_store()
    assert store.append_many(ramp(5)) == 5
    ds = store.dataset(["b", "a"])
    assert ds.x.dtype == np.float32 and ds.x.shape == (5, 2)
    np.testing.assert_array_equal(ds.x[:, 0], [0, 10, 20, 30, 40])
    np.testing.assert_array_equal(ds.x[:, 1], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(ds.ts, [0, 1, 2, 3, 4])
    assert ds.y is None and ds.labels is None and ds.features == ("b", "a")
    assert len(ds) == 5


def test_empty_store_and_unknown_feature_give_empty_arrays(make_store: StoreFactory) -> None:
    store = make_store()
    assert store.dataset(["a"], window=3).x.shape == (0, 3, 1)
    store.append_many(ramp(3))
    assert store.dataset(["nope"]).x.shape == (0, 1)
    assert store.latest(["nope"]) is None
    assert store.append_many([]) == 0


def test_rows_are_ordered_by_timestamp_not_insertion(make_store: StoreFactory) -> None:
    store = make_store()
    store.append_many([Sample(ts=t, values={"a": t}) for t in (3.0, 1.0, 2.0)])
    np.testing.assert_array_equal(store.dataset(["a"]).x[:, 0], [1, 2, 3])
    np.testing.assert_array_equal(store.latest_window(["a"], 2), [[2], [3]])


def test_windows_with_stride(make_store: StoreFactory) -> None:
    store = make_store()
    store.append_many(ramp(10))
    ds = store.dataset(["a", "b"], window=4, stride=3)
    assert ds.x.shape == (3, 4, 2)  # ends at rows 3, 6, 9
    np.testing.assert_array_equal(ds.x[:, :, 0], [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]])
    np.testing.assert_array_equal(ds.ts, [3, 6, 9])


def test_horizon_targets_the_row_after_the_window(make_store: StoreFactory) -> None:
    store = make_store()
    store.append_many(ramp(6))
    ds = store.dataset(["a"], window=3, horizon=1)
    assert ds.x.shape == (3, 3, 1) and ds.y is not None and ds.y.shape == (3, 1)
    np.testing.assert_array_equal(ds.y[:, 0], [3, 4, 5])
    np.testing.assert_array_equal(ds.x[-1, :, 0], [2, 3, 4])
    rows = store.dataset(["a", "b"], horizon=2)
    assert rows.x.shape == (4, 2) and rows.y is not None
    np.testing.assert_array_equal(rows.y[:, 0] - rows.x[:, 0], [2, 2, 2, 2])


def test_labels_are_the_last_rows_and_unlabelled_windows_are_dropped(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    store.append_many(
        [
            Sample(ts=float(i), values={"a": float(i)}, label=None if i == 4 else f"c{i % 2}")
            for i in range(6)
        ]
    )
    ds = store.dataset(["a"], window=2, labels=True)
    assert ds.labels is not None and ds.labels.dtype.kind == "U"
    # Windows end at rows 1..5; the one ending at row 4 has no label.
    np.testing.assert_array_equal(ds.ts, [1, 2, 3, 5])
    assert ds.labels.tolist() == ["c1", "c0", "c1", "c1"]
    assert ds.x.shape == (4, 2, 1)
    rows = store.dataset(["a"], labels=True)
    assert rows.labels is not None and rows.labels.shape == (5,)


def test_rows_missing_a_feature_or_holding_nan_are_skipped(make_store: StoreFactory) -> None:
    store = make_store()
    store.append_many(
        [
            Sample(ts=0.0, values={"a": 0.0, "b": 0.0}),
            Sample(ts=1.0, values={"a": 1.0}),  # b missing
            Sample(ts=2.0, values={"a": 2.0, "b": math.nan}),
            Sample(ts=3.0, values={"a": 3.0, "b": 3.0, "c": 9.0}),  # extra feature is fine
            Sample(ts=4.0, values={"b": 4.0, "a": 4.0}),
        ]
    )
    np.testing.assert_array_equal(store.dataset(["a", "b"]).ts, [0, 3, 4])
    np.testing.assert_array_equal(store.dataset(["a"]).ts, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(store.latest_window(["a", "b"], 3), [[0, 0], [3, 3], [4, 4]])
    assert store.latest_window(["a", "b"], 4) is None
    np.testing.assert_array_equal(store.latest(["c"]), [9.0])


def test_max_gap_drops_windows_spanning_a_gap(make_store: StoreFactory) -> None:
    store = make_store()
    stamps = [0.0, 1.0, 2.0, 10.0, 11.0, 12.0, 13.0]
    store.append_many([Sample(ts=t, values={"a": t}) for t in stamps])
    ds = store.dataset(["a"], window=2, max_gap_s=1.5)
    np.testing.assert_array_equal(ds.ts, [1, 2, 11, 12, 13])
    ds = store.dataset(["a"], window=2, horizon=1, max_gap_s=1.5)
    np.testing.assert_array_equal(ds.ts, [1, 11, 12])


def test_since_and_limit(make_store: StoreFactory) -> None:
    store = make_store()
    store.append_many(ramp(10))
    np.testing.assert_array_equal(store.dataset(["a"], since=7).ts, [7, 8, 9])
    np.testing.assert_array_equal(store.dataset(["a"], limit=4).ts, [6, 7, 8, 9])
    np.testing.assert_array_equal(store.dataset(["a"], since=2, limit=100).ts, range(2, 10))
    assert store.dataset(["a"], window=3, limit=4).x.shape == (2, 3, 1)


def test_latest_and_latest_window(make_store: StoreFactory) -> None:
    store = make_store()
    assert store.latest(["a"]) is None
    assert store.latest_window(["a"], 1) is None
    store.append_many(ramp(5))
    latest = store.latest(["b", "a"])
    assert latest is not None and latest.dtype == np.float32 and latest.shape == (2,)
    np.testing.assert_array_equal(latest, [40, 4])
    win = store.latest_window(["a", "b"], 3)
    assert win is not None and win.shape == (3, 2) and win.flags.c_contiguous
    np.testing.assert_array_equal(win, [[2, 20], [3, 30], [4, 40]])
    assert store.latest_window(["a"], 6) is None


def test_latest_window_does_not_reach_back_past_its_scan_bound(make_store: StoreFactory) -> None:
    """A dead sensor makes latest_window None, not a scan back to a stale window."""
    store = make_store()
    store.append_many(ramp(5))
    store.append_many([Sample(ts=100.0 + i, values={"a": 1.0}) for i in range(scan_rows(2))])
    assert store.latest_window(["a", "b"], 2) is None
    assert store.latest_window(["a"], 2) is not None


def test_stats_and_features(make_store: StoreFactory) -> None:
    store = make_store()
    empty = store.stats()
    assert (empty.rows, empty.oldest_ts, empty.newest_ts) == (0, None, None)
    store.append_many(ramp(4, start=50.0))
    store.append(Sample(ts=10.0, values={"c": 1.0}))
    stats = store.stats(per_feature=True)
    assert stats.rows == 5 and stats.bytes > 0
    assert (stats.oldest_ts, stats.newest_ts) == (10.0, 53.0)
    assert stats.feature_counts == {"a": 4, "b": 4, "c": 1}
    assert store.stats().feature_counts is None
    assert store.features() == {"a", "b", "c"}


def test_retention_by_rows_keeps_the_newest(make_store: StoreFactory) -> None:
    store = make_store(max_rows=10)
    for start in range(0, 35, 5):
        store.append_many(ramp(5, start=float(start)))
    assert store.stats().rows == 10
    np.testing.assert_array_equal(store.dataset(["a"]).ts, range(25, 35))


def test_retention_by_age_follows_the_injected_clock(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    store = make_store(max_age_s=60.0)
    now = clock.now
    store.append_many(ramp(10, start=now - 100, step=10))  # ts = now-100 ... now-10
    assert store.stats().oldest_ts == now - 60
    clock.advance(25)
    assert store.enforce_retention() == 3
    assert store.stats().oldest_ts == now - 30
    clock.advance(1000)
    store.enforce_retention()
    assert store.stats().rows == 0
    assert store.features() == {"a", "b"}


def test_retention_is_checked_only_every_interval(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    store = make_store(max_rows=5, retention_interval_s=10.0)
    store.append_many(ramp(3))  # first append checks
    store.append_many(ramp(10, start=3))
    assert store.stats().rows == 13  # within the interval: overshoot allowed
    clock.advance(10)
    store.append_many(ramp(1, start=13))
    assert store.stats().rows == 5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window": 0},
        {"stride": 0},
        {"horizon": -1},
        {"limit": 0},
        {"since": math.nan},
        {"window": 2.5},
    ],
)
def test_bad_dataset_arguments_raise_store_error(make_store: StoreFactory, kwargs: dict) -> None:
    store = make_store()
    with pytest.raises(StoreError, match=next(iter(kwargs))):
        store.dataset(["a"], **kwargs)


@pytest.mark.parametrize("features", [[], "ab", ["a", "a"], [""]])
def test_bad_feature_lists_raise_store_error(make_store: StoreFactory, features: list) -> None:
    store = make_store()
    with pytest.raises(StoreError, match="features"):
        store.dataset(features)
    with pytest.raises(StoreError, match="features"):
        store.latest_window(features, 1)


@pytest.mark.parametrize(
    "bad",
    [
        Sample(ts=math.inf, values={"a": 1.0}),
        Sample(ts=1.0, values={"a": 1e40}),
        Sample(ts=1.0, values={"a": "x"}),  # type: ignore[dict-item]
        Sample(ts=1.0, values={"a": 1.0}, label=3),  # type: ignore[arg-type]
    ],
)
def test_a_bad_sample_rejects_the_whole_batch(make_store: StoreFactory, bad: Sample) -> None:
    store = make_store()
    with pytest.raises(StoreError, match="sample 1"):
        store.append_many([Sample(ts=0.0, values={"a": 0.0}), bad])
    assert store.stats().rows == 0


def test_use_after_close_raises_and_close_is_idempotent(make_store: StoreFactory) -> None:
    store = make_store()
    store.append_many(ramp(2))
    store.close()
    store.close()
    with pytest.raises(StoreError, match="close"):
        store.append_many(ramp(1))
    with pytest.raises(StoreError, match="close"):
        store.latest(["a"])
