"""A token bucket: ``per_minute`` tokens a minute, a burst of at most one minute's worth."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class TokenBucket:
    """``take(n)`` takes ``n`` tokens and returns 0, or takes none and returns the seconds to
    wait until ``n`` are there. ``clock`` is monotonic (injectable for tests)."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._tokens = self.capacity
        self._at = clock()
        self._lock = threading.Lock()

    def take(self, n: int = 1) -> float:
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._at)  # a clock that went back adds nothing
            self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
            self._at = now
            if n <= self._tokens:
                self._tokens -= n
                return 0.0
            return (n - self._tokens) / self.rate

    @staticmethod
    def retry_after(wait_s: float) -> int:
        """A ``Retry-After`` header value: whole seconds, at least 1."""
        return max(1, math.ceil(wait_s))
