"""Value types shared by the agent's sensors, sampler and store."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Reading:
    """One driver's output for one sampling tick.

    ``values`` maps feature names (``temp_c``, ``humidity_pct`` ...) to floats. ``label`` is the
    ground truth when the source knows it (a CSV ``label`` column, the synthetic generator), else
    ``None``. ``ts`` is Unix seconds from the sampler's (injectable) clock.
    """

    sensor: str
    ts: float
    values: Mapping[str, float]
    label: str | None = None


@dataclass(frozen=True, slots=True)
class Sample:
    """The validated readings of one tick merged into one row: what the store keeps."""

    ts: float
    values: Mapping[str, float] = field(default_factory=dict)
    label: str | None = None
