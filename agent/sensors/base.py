"""The sensor driver contract: what every driver declares and how it is built.

A driver is built from its config table with ``from_config(name, options, *, clock)``. It
declares its features (name, unit, plausible range) up front, and ``read()`` returns zero or
more :class:`~agent.types.Reading` objects or raises :class:`~agent.errors.SensorError`.
Readings the driver had to drop before they became readings (bad JSON on an MQTT topic, an
unreadable image) are counted by reason and reported through ``rejected()``.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agent.types import Reading

Clock = Callable[[], float]
"""Returns Unix seconds. ``time.time`` in production, a fake in tests."""


@dataclass(frozen=True, slots=True)
class Feature:
    """One value a driver produces: its name, unit and plausible range (inclusive)."""

    name: str
    unit: str
    low: float = -math.inf
    high: float = math.inf

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


class SensorDriver(Protocol):
    """What the sampler needs from a driver."""

    @property
    def name(self) -> str:
        """The sensor's configured name; every reading carries it as ``Reading.sensor``."""
        ...

    @property
    def features(self) -> Sequence[Feature]:
        """Every feature the driver can put in ``Reading.values``."""
        ...

    def read(self) -> list[Reading]:
        """Readings due now (often one, possibly none). Raises ``SensorError`` on failure."""
        ...

    def rejected(self) -> Mapping[str, int]:
        """Cumulative counts of input the driver dropped, by reason (e.g. ``bad_json``)."""
        ...

    def close(self) -> None:
        """Release the bus, connection or file. Safe to call twice."""
        ...


class DriverFactory(Protocol):
    """A driver class (or any object) that builds a driver from its config options."""

    def from_config(
        self, name: str, options: Mapping[str, Any], *, clock: Clock
    ) -> SensorDriver: ...


class DriverBase:
    """Shared plumbing for the built-in drivers: name, clock, features, rejection counts."""

    def __init__(self, name: str, features: Sequence[Feature], clock: Clock) -> None:
        self._name = name
        self._features = tuple(features)
        self._clock = clock
        self._rejected: Counter[str] = Counter()
        self._rejected_lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def features(self) -> Sequence[Feature]:
        return self._features

    def rejected(self) -> Mapping[str, int]:
        with self._rejected_lock:
            return dict(self._rejected)

    def _reject(self, reason: str) -> None:
        with self._rejected_lock:
            self._rejected[reason] += 1

    def close(self) -> None:
        return None

    def _reading(
        self, values: Mapping[str, float], *, ts: float | None = None, label: str | None = None
    ) -> Reading:
        return Reading(
            sensor=self._name,
            ts=self._clock() if ts is None else ts,
            values=values,
            label=label,
        )
