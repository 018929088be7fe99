from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from coordinator.data import DataError, Table, arrays_for, read_csv, write_csv
from coordinator.demo.partition import Partitioning, split
from coordinator.federation.stats import pool
from models.spec import InputSpec, ModelSpec, Task


def _table(n: int = 600, seed: int = 0) -> Table:
    rng = np.random.default_rng(seed)
    labels = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    return Table(("x", "y"), rng.normal(size=(n, 2)).astype(np.float32), labels, None)


def test_csv_round_trip_skips_and_counts_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("x,y,label\n1,2,a\nnan,3,b\n4,oops,c\n5,6,b\n")
    t = read_csv(path)
    assert t.features == ("x", "y") and len(t) == 2 and t.skipped == 2
    write_csv(tmp_path / "e.csv", t)
    again = read_csv(tmp_path / "e.csv")
    np.testing.assert_array_equal(again.values, t.values)
    assert list(again.labels) == ["a", "b"]  # type: ignore[arg-type]


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("x,label\n1,a\n")
    with pytest.raises(DataError, match=r"missing \['y'\]"):
        read_csv(path, ["x", "y"])


def test_arrays_for_classify_and_forecast_windows() -> None:
    t = _table(50)
    spec = ModelSpec("mlp", Task.CLASSIFY, InputSpec.tabular(("x", "y")), labels=("a", "b", "c"))
    x, y = arrays_for(spec, t)
    assert x.shape == (50, 2) and y is not None and set(y) <= {0, 1, 2}
    fspec = ModelSpec("cnn1d", Task.FORECAST, InputSpec.windowed(("x", "y"), 8))
    xw, yw = arrays_for(fspec, t)
    assert xw.shape == (42, 8, 2) and yw is not None and yw.shape == (42, 2)
    np.testing.assert_array_equal(xw[0, -1], t.values[7])
    np.testing.assert_array_equal(yw[0], t.values[8])


def test_iid_split_is_balanced_and_dirichlet_is_skewed() -> None:
    t = _table(3000)
    iid = split(t, 5, Partitioning.parse("iid"))
    skew = split(t, 5, Partitioning.parse("dirichlet:0.1"), min_rows=20)
    assert sum(len(p) for p in iid) == 3000 == sum(len(p) for p in skew)

    def spread(parts: list[Table]) -> float:
        shares = [np.mean(p.labels == "a") for p in parts]  # type: ignore[comparison-overlap]
        return float(np.std(shares))

    assert spread(iid) < 0.05 < spread(skew)


@pytest.mark.parametrize(
    "text", ["dirichlet", "dirichlet:0", "dirichlet:-1", "zipf:2", "dirichlet:x"]
)
def test_bad_partition_names_the_value(text: str) -> None:
    with pytest.raises(DataError, match="dirichlet:ALPHA"):
        Partitioning.parse(text)


def test_pooled_statistics_equal_the_moments_of_all_the_data() -> None:
    rng = np.random.default_rng(1)
    parts = [rng.normal(loc=i * 3, scale=i + 1, size=(100 * (i + 1), 3)) for i in range(3)]
    replies = [(len(p), [p.mean(0), p.var(0), np.ones(2)]) for p in parts]
    out = pool([np.zeros(3), np.ones(3), np.full(2, 7.0)], [(0, 1)], replies)
    allx = np.concatenate(parts)
    np.testing.assert_allclose(out[0], allx.mean(0), rtol=1e-5)
    np.testing.assert_allclose(out[1], allx.var(0), rtol=1e-5)
    np.testing.assert_array_equal(out[2], np.full(2, 7.0))  # not a statistic: untouched
