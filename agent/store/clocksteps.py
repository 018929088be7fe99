"""Retention by age that survives steps of the wall clock.

Rows carry wall-clock timestamps, and retention by age compares them with the wall clock. When
the clock is *stepped* (NTP setting the time of a board without an RTC, ``date -s``), the rows
written before the step sit on the old time line: after a step forward by more than
``max_age_s`` every one of them looks expired though it was written seconds ago, and after a
step back they look young for the length of the step.

:class:`StepLog` notices steps by comparing the wall clock with a monotonic one before each
append and retention check, and remembers, for the ids written before each step, how far the
clock has moved since. :meth:`StepLog.cutoffs` then gives one age cutoff per run of ids, each on
its own time line, so a row is deleted when it is ``max_age_s`` old in elapsed time. Steps
smaller than ``tolerance_s`` are ignored (NTP slews those). Steps are kept in memory only:
after a restart, rows written before an earlier step are judged by their timestamps again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]
STEP_TOLERANCE_S = 2.0


@dataclass(slots=True)
class Segment:
    """Rows with ids up to ``last_id`` (and above the previous segment's) are ``shift`` behind."""

    last_id: int
    shift: float


def elapsed_clock(wall: Clock, monotonic: Clock | None) -> Clock:
    """The monotonic clock to pair with ``wall``.

    With the real wall clock, ``time.monotonic``. With an injected wall clock and no monotonic
    one, the wall clock itself: a test moving a fake clock means time passing, not a step.
    """
    if monotonic is not None:
        return monotonic
    return time.monotonic if wall is time.time else wall


class StepLog:
    """Steps of ``wall`` against ``monotonic``, and the age cutoffs they imply."""

    def __init__(self, wall: Clock, monotonic: Clock, tolerance_s: float = STEP_TOLERANCE_S):
        self._wall = wall
        self._monotonic = monotonic
        self._tolerance = tolerance_s
        self._skew = wall() - monotonic()
        self._segments: list[Segment] = []

    def check(self) -> float | None:
        """The size of a step since the last check (positive: forward), or None."""
        skew = self._wall() - self._monotonic()
        step = skew - self._skew
        if abs(step) < self._tolerance:
            return None
        self._skew = skew
        return step

    def record(self, step: float, last_id: int | None) -> None:
        """Rows up to ``last_id`` (the newest id before the step) are ``step`` behind now."""
        if last_id is None:
            return
        for segment in self._segments:
            segment.shift += step
        if self._segments and self._segments[-1].last_id >= last_id:
            return
        self._segments.append(Segment(last_id, step))

    def cutoffs(
        self, now: float, max_age_s: float, first_id: int | None
    ) -> list[tuple[int | None, float]]:
        """``(last id or None for the rest, cutoff ts)`` in id order; forgets deleted runs."""
        if first_id is None:
            self._segments.clear()
        else:
            self._segments = [s for s in self._segments if s.last_id >= first_id]
        runs: list[tuple[int | None, float]] = [
            (s.last_id, now - s.shift - max_age_s) for s in self._segments
        ]
        runs.append((None, now - max_age_s))
        return runs

    def forget(self) -> None:
        """The table is empty: no row is on an old time line (and SQLite reuses ids then)."""
        self._segments.clear()
