"""Per-sensor health as the sampler tracks it, and the snapshot it reports."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from agent.sensors.config import SensorSettings
from agent.sensors.validate import ReadingValidator


class SensorState(StrEnum):
    OK = "ok"
    FAILING = "failing"  # the last read failed
    DISABLED = "disabled"  # too many consecutive failures; probed every retry_disabled_s


@dataclass(frozen=True)
class SensorStatus:
    """One sensor's state and counters, as ``/metrics`` and health report them."""

    name: str
    driver: str
    state: SensorState
    accepted: int
    rejected: Mapping[str, int]  # by reason: validator's (nan, stale...) and driver's
    errors: int
    consecutive_errors: int
    last_error: str | None
    last_reading_ts: float | None
    rate_hz: float  # accepted readings per second over the rate window

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


class SlotState:
    """Mutable state of one sensor; the sampler calls it with its lock held."""

    def __init__(self) -> None:
        self.state = SensorState.OK
        self.errors = 0
        self.consecutive_errors = 0
        self.last_error: str | None = None
        self.disabled_at = 0.0
        self.last_reading_ts: float | None = None
        self._accepted_at: deque[tuple[float, int]] = deque()
        self._first_seen: float | None = None

    def record_error(self, now: float, message: str, max_consecutive: int) -> SensorState:
        self.errors += 1
        self.consecutive_errors += 1
        self.last_error = message
        if self.state is SensorState.DISABLED or self.consecutive_errors >= max_consecutive:
            self.state = SensorState.DISABLED
            self.disabled_at = now
        else:
            self.state = SensorState.FAILING
        return self.state

    def record_ok(self) -> SensorState:
        self.state = SensorState.OK
        self.consecutive_errors = 0
        return self.state

    def count_accepted(self, now: float, n: int, window_s: float) -> None:
        if self._accepted_at and self._accepted_at[-1][0] > now:  # the clock stepped back
            self._accepted_at.clear()
            self._first_seen = now
        if self._first_seen is None:
            self._first_seen = now
        if n:
            self._accepted_at.append((now, n))
            self.last_reading_ts = now
        while self._accepted_at and self._accepted_at[0][0] < now - window_s:
            self._accepted_at.popleft()

    def rate(self, now: float, window_s: float) -> float:
        if self._first_seen is None:
            return 0.0
        span = min(window_s, now - self._first_seen)
        recent = sum(n for t, n in self._accepted_at if t >= now - window_s)
        return recent / span if span > 0 else 0.0

    def snapshot(
        self,
        config: SensorSettings,
        validator: ReadingValidator,
        driver_rejected: Mapping[str, int],
        now: float,
        window_s: float,
    ) -> SensorStatus:
        rejected = dict(validator.rejected())
        for reason, n in driver_rejected.items():
            rejected[reason] = rejected.get(reason, 0) + n
        return SensorStatus(
            name=config.name,
            driver=config.driver,
            state=self.state,
            accepted=validator.accepted,
            rejected=rejected,
            errors=self.errors,
            consecutive_errors=self.consecutive_errors,
            last_error=self.last_error,
            last_reading_ts=self.last_reading_ts,
            rate_hz=self.rate(now, window_s),
        )
