"""Labels set on stored samples after the fact (:meth:`Store.label_samples`), for both stores.

A label arrives for a reading already stored (the one a prediction was computed from): the
row keeps its time and values and gains a label (the class, in the ``label`` column) and/or
extra values (regression targets, merged into the row's values under their output names).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from agent.errors import StoreError
from agent.store.base import SampleLabel
from agent.store.codec import EncodedRow, _packer, encode
from agent.store.layouts import Layout
from agent.types import Sample


def check_seconds(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StoreError(f"{name}: expected a finite number. Received: {name}={value!r}")


def check_tolerance(tolerance_s: float) -> None:
    check_seconds("tolerance_s", tolerance_s)
    if tolerance_s < 0:
        raise StoreError(
            f"tolerance_s: expected a number >= 0. Received: tolerance_s={tolerance_s!r}"
        )


def check_stamps(stamps: Sequence[float]) -> list[float]:
    out = list(stamps)
    for i, ts in enumerate(out):
        check_seconds(f"stamps[{i}]", ts)
    return out


def check_labels(labels: Sequence[SampleLabel]) -> list[SampleLabel]:
    """Validate :meth:`Store.label_samples` arguments (values are checked when encoded)."""
    batch = list(labels)
    for i, item in enumerate(batch):
        if not isinstance(item, SampleLabel):
            raise StoreError(f"labels[{i}]: expected a SampleLabel. Received: {item!r}")
        check_seconds(f"labels[{i}].ts", item.ts)
        if item.label is not None and not (isinstance(item.label, str) and item.label):
            raise StoreError(
                f"labels[{i}].label: expected a non-empty string or None. "
                f"Received: label={item.label!r}"
            )
    return batch


def relabel(item: SampleLabel, names: Layout, data: bytes, label: str | None) -> EncodedRow:
    """A stored row (``names``, ``data``, ``label``) with ``item``'s label and values applied.

    Raises ``StoreError`` (so the caller writes nothing) when a value does not fit float32.
    """
    values = dict(zip(names, _packer(len(names)).unpack(data), strict=True))
    if item.values:
        values.update(item.values)
    return encode(Sample(item.ts, values, label if item.label is None else item.label))
