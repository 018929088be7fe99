"""Validator: each rejection reason, counted per sensor, and the range override."""

from __future__ import annotations

import math

from agent.sensors.base import Feature
from agent.sensors.validate import ReadingValidator, Reject
from agent.types import Reading

from .conftest import FakeClock

FEATURES = [Feature("temp_c", "°C", -40, 85), Feature("rh", "%", 0, 100)]


def reading(ts: float, **values: float) -> Reading:
    return Reading("s", ts, values)


def test_each_reason_is_rejected_and_counted(clock: FakeClock) -> None:
    v = ReadingValidator("s", FEATURES, clock=clock, max_age_s=30)
    now = clock.now
    assert v.check(reading(now - 5, temp_c=20, rh=40)) is None
    assert v.check(reading(now - 4, temp_c=math.nan)) is Reject.NAN
    assert v.check(reading(now - 4, rh=math.inf)) is Reject.INF
    assert v.check(reading(now - 4, temp_c=-math.inf)) is Reject.INF
    assert v.check(reading(now - 4, temp_c=90)) is Reject.OUT_OF_RANGE
    assert v.check(reading(now - 5, temp_c=20)) is Reject.DUPLICATE
    assert v.check(reading(now - 6, temp_c=20)) is Reject.STALE  # backwards
    assert v.check(reading(now - 4)) is Reject.EMPTY
    assert v.check(reading(now, temp_c=21, unknown=1e9)) is None  # undeclared: no range
    clock.advance(100)
    assert v.check(reading(now + 1, temp_c=21)) is Reject.STALE  # older than max_age_s
    assert v.accepted == 2
    assert v.rejected() == {
        "nan": 1,
        "inf": 2,
        "out_of_range": 1,
        "duplicate": 1,
        "stale": 2,
        "empty": 1,
    }


def test_config_ranges_override_declared_ones(clock: FakeClock) -> None:
    v = ReadingValidator("s", FEATURES, clock=clock, ranges={"temp_c": (10, 30)})
    assert v.check(reading(clock.now - 2, temp_c=5)) is Reject.OUT_OF_RANGE
    assert v.check(reading(clock.now - 1, temp_c=-40, rh=-1)) is Reject.OUT_OF_RANGE
    assert v.filter([reading(clock.now, temp_c=25), reading(clock.now, temp_c=26)]) == [
        reading(clock.now, temp_c=25)
    ]
