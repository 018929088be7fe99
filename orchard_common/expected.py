"""The words of the "expected ..." part of a config error, shared by both config readers
(agent/options.py, coordinator/options.py), so both packages phrase a range the same way."""

from __future__ import annotations


def bounds(low: float | None, high: float | None) -> str:
    """`` in [low, high]``, `` >= low``, `` <= high`` or nothing."""
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""
