"""Fakes shared across the suite (only for what the standards allow: the clock, hardware)."""

from __future__ import annotations


class FakeClock:
    """Seconds that move only when the test says so (Unix time by default)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
