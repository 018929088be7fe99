"""Normalisation statistics are pooled, not optimised.

The models carry input (and target) mean and variance as non-trainable weights. Server
optimisers (FedAdam, FedYogi, FedAvgM) would treat them as parameters and move them by a
learning rate from the initial (0, 1); trimmed mean and median would drop devices' data. So
after every aggregation the statistics are replaced by the exact pooled moments of the
devices that answered, weighted by their example counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pool(
    arrays: list[np.ndarray],
    pairs: Sequence[tuple[int, int]],
    replies: Sequence[tuple[float, Sequence[np.ndarray]]],
) -> list[np.ndarray]:
    """``arrays`` with each (mean, variance) pair replaced by the pooled moments of ``replies``.

    ``replies`` holds ``(num_examples, arrays)`` per device.
    """
    if not replies:
        return arrays
    out = list(arrays)
    weights = np.array([max(float(n), 0.0) for n, _ in replies], np.float64)
    if weights.sum() <= 0:
        return arrays
    weights = weights / weights.sum()
    for mean_i, var_i in pairs:
        means = np.stack([np.asarray(a[mean_i], np.float64) for _, a in replies])
        variances = np.stack([np.asarray(a[var_i], np.float64) for _, a in replies])
        mean = np.tensordot(weights, means, axes=1)
        second = np.tensordot(weights, variances + means**2, axes=1)
        out[mean_i] = mean.astype(np.float32)
        out[var_i] = np.maximum(second - mean**2, 1e-12).astype(np.float32)
    return out
