"""Turning stored rows into training arrays: pure numpy, shared by every store.

Input is what a store read returns: timestamps sorted ascending, a ``(n, F)`` float32 matrix
with NaN where a feature is missing, and the labels. Output is a :class:`Dataset`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from agent.errors import StoreError
from agent.store.base import Dataset, FloatArray


def scan_rows(window: int) -> int:
    """How many of the newest stored rows ``latest_window`` may look through.

    Bounding the look-back keeps the inference hot path O(window) when a feature has stopped
    arriving (a dead sensor): the answer is then ``None`` rather than a long-stale window.
    """
    return max(4 * window, window + 256)


def check_features(features: Sequence[str]) -> tuple[str, ...]:
    """Validate a requested feature list: non-empty, strings, no duplicates."""
    if isinstance(features, str):
        raise StoreError(f"features: expected a sequence of names. Received: features={features!r}")
    names = tuple(features)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise StoreError(
            f"features: expected a non-empty sequence of names. Received: features={names!r}"
        )
    if len(set(names)) != len(names):
        raise StoreError(f"features: expected distinct names. Received: features={names!r}")
    return names


def check_count(name: str, value: int | None, *, allow_none: bool = True) -> None:
    """Refuse a window/stride/horizon/limit that is not a positive integer."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StoreError(f"{name}: expected a positive integer. Received: {name}={value!r}")


def check_seconds(name: str, value: float | None) -> None:
    """Refuse a timestamp or duration that is not a finite number."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StoreError(f"{name}: expected a finite number. Received: {name}={value!r}")


def check_dataset_args(
    features: Sequence[str],
    window: int | None,
    stride: int,
    horizon: int | None,
    *,
    since: float | None,
    limit: int | None,
    max_gap_s: float | None,
) -> tuple[str, ...]:
    """Validate :meth:`Store.dataset` arguments; return the feature names as a tuple."""
    names = check_features(features)
    for key, value in (("window", window), ("horizon", horizon), ("limit", limit)):
        check_count(key, value)
    check_count("stride", stride, allow_none=False)
    check_seconds("since", since)
    check_seconds("max_gap_s", max_gap_s)
    return names


def build_dataset(
    features: tuple[str, ...],
    ts: npt.NDArray[np.float64],
    matrix: FloatArray,
    labels: Sequence[str | None] | None,
    *,
    window: int | None,
    stride: int,
    horizon: int | None,
    max_gap_s: float | None,
) -> Dataset:
    """Drop incomplete rows, then cut windows, targets and labels (see :meth:`Store.dataset`)."""
    keep = np.isfinite(matrix).all(axis=1)
    ts, matrix = ts[keep], matrix[keep]
    n = int(ts.shape[0])
    w = window or 1
    h = horizon or 0
    ends = np.arange(w - 1, n - h, stride, dtype=np.int64)
    if max_gap_s is not None and ends.size:
        breaks = np.concatenate(([0], np.cumsum(np.diff(ts) > max_gap_s)))
        ends = ends[breaks[ends - (w - 1)] == breaks[ends + h]]
    label_arr: npt.NDArray[np.str_] | None = None
    if labels is not None:
        kept = np.array(labels, dtype=object).reshape(-1)[keep]
        ends = ends[np.array([lab is not None for lab in kept[ends]], dtype=bool)]
        label_arr = np.array(kept[ends].tolist(), dtype=np.str_)
    if window is None:
        x = matrix[ends]
    else:
        x = matrix[ends[:, None] + np.arange(1 - w, 1, dtype=np.int64)[None, :]]
    y = matrix[ends + h] if horizon is not None else None
    return Dataset(
        x=np.ascontiguousarray(x, dtype=np.float32).reshape(
            (len(ends), len(features)) if window is None else (len(ends), w, len(features))
        ),
        y=None if y is None else np.ascontiguousarray(y, dtype=np.float32),
        labels=label_arr,
        ts=ts[ends].astype(np.float64),
        features=features,
    )
