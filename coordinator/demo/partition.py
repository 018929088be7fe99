"""Split one data set across simulated devices: IID, or label-skewed by a Dirichlet draw.

``dirichlet:ALPHA`` gives each class's rows to devices in proportions drawn from
Dirichlet(ALPHA): small ALPHA (0.1–0.5) means each device sees mostly a few classes, as real
rooms and machines do; large ALPHA approaches IID. Without labels (time series, anomaly) rows
are split into contiguous blocks of Dirichlet-drawn sizes, so devices hold different stretches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coordinator.data import DataError, Table


@dataclass(frozen=True)
class Partitioning:
    kind: str  # "iid" or "dirichlet"
    alpha: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Partitioning:
        if text == "iid":
            return cls("iid")
        name, _, value = text.partition(":")
        try:
            alpha = float(value)
        except ValueError:
            alpha = -1.0
        if name != "dirichlet" or not alpha > 0:
            raise DataError(
                f"expected 'iid' or 'dirichlet:ALPHA' with ALPHA > 0. Received: partition={text!r}"
            )
        return cls("dirichlet", alpha)

    def __str__(self) -> str:
        return "iid" if self.kind == "iid" else f"dirichlet:{self.alpha:g}"


def split(
    table: Table, devices: int, how: Partitioning, seed: int = 0, min_rows: int = 60
) -> list[Table]:
    """``devices`` tables; every device gets at least ``min_rows`` rows (redrawn until so)."""
    if len(table) < devices * min_rows:
        raise DataError(
            f"expected at least {devices * min_rows} rows for {devices} devices. "
            f"Received: {len(table)} rows"
        )
    rng = np.random.default_rng(seed)
    for _ in range(100):
        parts = _draw(table, devices, how, rng)
        if min(len(p) for p in parts) >= min_rows:
            return [table.take(np.sort(p)) for p in parts]
    raise DataError(f"could not give every device {min_rows} rows with partition={how}")


def _draw(
    table: Table, devices: int, how: Partitioning, rng: np.random.Generator
) -> list[np.ndarray]:
    n = len(table)
    if how.kind == "iid":
        return list(np.array_split(rng.permutation(n), devices))
    if table.labels is None:
        sizes = rng.dirichlet([how.alpha] * devices) * n
        edges = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        edges[-1] = n
        return [np.arange(edges[i], edges[i + 1]) for i in range(devices)]
    parts: list[list[int]] = [[] for _ in range(devices)]
    for label in np.unique(table.labels):
        rows = rng.permutation(np.flatnonzero(table.labels == label))
        shares = rng.dirichlet([how.alpha] * devices)
        cuts = (np.cumsum(shares)[:-1] * len(rows)).astype(int)
        for device, chunk in enumerate(np.split(rows, cuts)):
            parts[device].extend(chunk.tolist())
    return [np.array(p, dtype=int) for p in parts]
