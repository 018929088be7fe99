"""Reject implausible readings before they reach the store, counting each reason per sensor.

A reading is rejected whole when it is empty, holds NaN or an infinity, has a value outside
its feature's range (the driver's declared range unless config overrides it), repeats the
previous accepted reading's timestamp (``duplicate``), or is older than ``max_age_s`` on the
clock or older than the previous accepted reading (``stale``).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from enum import StrEnum

from agent.sensors.base import Clock, Feature
from agent.types import Reading

logger = logging.getLogger(__name__)


class Reject(StrEnum):
    """Why a reading was not passed on (also the label in metrics)."""

    EMPTY = "empty"
    NAN = "nan"
    INF = "inf"
    OUT_OF_RANGE = "out_of_range"
    DUPLICATE = "duplicate"
    STALE = "stale"


class ReadingValidator:
    """Checks one sensor's readings; thread-safe counters for metrics."""

    def __init__(
        self,
        sensor: str,
        features: Sequence[Feature],
        *,
        clock: Clock,
        max_age_s: float = 60.0,
        ranges: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        self.sensor = sensor
        self._clock = clock
        self._max_age = max_age_s
        self._ranges = {f.name: (f.low, f.high) for f in features}
        self._ranges.update(ranges or {})
        self._last_ts: float | None = None
        self._accepted = 0
        self._rejected: Counter[Reject] = Counter()
        self._lock = threading.Lock()

    def check(self, reading: Reading) -> Reject | None:
        """The reason to reject ``reading``, or None (and it becomes the previous one)."""
        with self._lock:
            reason = self._reason(reading)
            if reason is None:
                self._accepted += 1
                self._last_ts = reading.ts
            else:
                self._rejected[reason] += 1
        if reason is not None:
            logger.debug("sensor %s: rejected reading at %s: %s", self.sensor, reading.ts, reason)
        return reason

    def filter(self, readings: Sequence[Reading]) -> list[Reading]:
        """The readings that pass, in order."""
        return [r for r in readings if self.check(r) is None]

    @property
    def accepted(self) -> int:
        with self._lock:
            return self._accepted

    def rejected(self) -> dict[str, int]:
        with self._lock:
            return {str(reason): n for reason, n in self._rejected.items()}

    def _reason(self, reading: Reading) -> Reject | None:
        if self._last_ts is not None and self._last_ts > self._clock() + 2.0:
            self._last_ts = None  # the clock stepped back: the previous reading is "in the future"
        if not reading.values:
            return Reject.EMPTY
        for name, value in reading.values.items():
            if math.isnan(value):
                return Reject.NAN
            if math.isinf(value):
                return Reject.INF
            low, high = self._ranges.get(name, (-math.inf, math.inf))
            if not low <= value <= high:
                return Reject.OUT_OF_RANGE
        if self._last_ts is not None and reading.ts == self._last_ts:
            return Reject.DUPLICATE
        if self._last_ts is not None and reading.ts < self._last_ts:
            return Reject.STALE
        if reading.ts < self._clock() - self._max_age:
            return Reject.STALE
        return None
