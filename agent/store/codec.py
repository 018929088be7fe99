"""Validating and packing samples into rows before a write transaction starts."""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import NamedTuple

from agent.errors import StoreError
from agent.store.layouts import Layout
from agent.types import Sample


class EncodedRow(NamedTuple):
    ts: float
    layout: Layout
    label: str | None
    data: bytes


@lru_cache(maxsize=64)
def _packer(width: int) -> struct.Struct:
    return struct.Struct(f"<{width}f")


def encode(sample: Sample, index: int = 0) -> EncodedRow:
    """Check one sample and pack its values (sorted by name) as little-endian float32.

    Values are stored as float32 (what every reader returns); NaN and inf are kept and read as
    missing. A value beyond the float32 range is refused rather than silently turned into inf.
    """
    ts = sample.ts
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        raise StoreError(f"sample {index}: expected a finite ts. Received: ts={ts!r}")
    if not isinstance(sample.values, Mapping):
        raise StoreError(
            f"sample {index}: expected a mapping of values. Received: {sample.values!r}"
        )
    label = sample.label
    if label is not None and not isinstance(label, str):
        raise StoreError(f"sample {index}: expected a str label or None. Received: label={label!r}")
    layout = tuple(sorted(sample.values))
    if not all(isinstance(name, str) and name for name in layout):
        raise StoreError(
            f"sample {index}: expected non-empty str feature names. Received: {layout!r}"
        )
    try:
        data = _packer(len(layout)).pack(*(sample.values[name] for name in layout))
    except (struct.error, OverflowError, TypeError) as exc:
        raise StoreError(
            f"sample {index}: expected float values within float32 range. "
            f"Received: values={dict(sample.values)!r} ({exc})"
        ) from exc
    return EncodedRow(float(ts), layout, label, data)


def encode_batch(samples: Sequence[Sample]) -> list[EncodedRow]:
    """Encode a batch; the first bad sample rejects the whole batch (nothing is written)."""
    return [encode(sample, i) for i, sample in enumerate(samples)]
