"""The wall clock stepping back and forth (NTP on a board without an RTC, ``date -s``).

Promises: nothing crashes; health ``seq`` numbers are neither duplicated nor skipped and health
keeps its interval; the sampler neither stalls for the length of a step back nor bursts after
a step forward; retention by age does not delete rows written moments ago because the clock
jumped forward. Only the clocks are fake (``FakeClock``, wall and monotonic).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.sensors.base import DriverBase, Feature
from agent.sensors.config import ConfiguredSensor, SensorSettings
from agent.sensors.sampler import Sampler
from agent.store import MemoryStore, SqliteStore, Store, StoreSettings
from agent.types import Reading, Sample
from tests.brokers import Broker
from tests.fakes import FakeClock
from tests.faults.agent_scenarios import run_clock_jumps

BACK, FORWARD = -3600.0, 7200.0


class Counting(DriverBase):
    """One reading per ``read()``, stamped with the (fake) wall clock; counts the calls."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__("env", [Feature("x", "")], clock)
        self.calls = 0

    def read(self) -> list[Reading]:
        self.calls += 1
        return [self._reading({"x": float(self.calls)})]


def sampler_on(clock: FakeClock) -> tuple[Sampler, Counting, list[Sample]]:
    driver = Counting(clock)
    samples: list[Sample] = []
    config = SensorSettings(name="env", driver="counting", interval_s=1.0)
    return Sampler([ConfiguredSensor(config, driver)], samples.append, clock=clock), driver, samples


@pytest.mark.parametrize("jump", [BACK, FORWARD])
def test_the_sampler_reads_every_interval_across_a_step(jump: float) -> None:
    clock = FakeClock()
    sampler, driver, _samples = sampler_on(clock)
    reads = []
    for tick in range(10):
        clock.advance(1.0)
        if tick == 4:
            clock.advance(jump)
        before = driver.calls
        sampler.poll_once()
        reads.append(driver.calls - before)
    assert reads == [1] * 10  # no stall after a step back, no burst after a step forward


def test_readings_after_a_step_back_are_accepted_and_counted() -> None:
    clock = FakeClock()
    sampler, _driver, samples = sampler_on(clock)
    for tick in range(10):
        clock.advance(1.0)
        if tick == 4:
            clock.advance(BACK)
        sampler.poll_once()
    status = sampler.status()["env"]
    assert len(samples) == 10 and status.rejected == {}
    assert status.rate_hz == pytest.approx(1.0, rel=0.2)


@pytest.fixture(params=["sqlite", "memory"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    built: list[Store] = []

    def make(wall: FakeClock, mono: FakeClock, max_age_s: float) -> Store:
        options = StoreSettings(path=tmp_path / "s.db", max_age_s=max_age_s, retention_interval_s=0)
        kind = SqliteStore if request.param == "sqlite" else MemoryStore
        store: Store = kind(options, clock=wall, monotonic=mono)
        built.append(store)
        return store

    yield make
    for store in built:
        store.close()


def _tick(store: Store, wall: FakeClock, mono: FakeClock, n: int, step: float = 1.0) -> None:
    for _ in range(n):
        wall.advance(step)
        mono.advance(step)
        store.append(Sample(wall(), {"x": 1.0}))


def test_a_step_forward_does_not_expire_fresh_rows(stores: Any) -> None:
    wall, mono = FakeClock(), FakeClock(start=50.0)
    store = stores(wall, mono, max_age_s=600.0)
    _tick(store, wall, mono, 100)
    wall.advance(FORWARD)  # every row now looks two hours old
    assert store.enforce_retention() == 0
    _tick(store, wall, mono, 10)
    assert store.stats().rows == 110  # they were written under 2 minutes ago
    _tick(store, wall, mono, 1, step=500.0)  # at 610 s elapsed, rows 1..9 are over 600 s old
    assert store.stats().rows == 111 - 9
    _tick(store, wall, mono, 1, step=200.0)  # at 810 s, only the rows of 610 s and 810 s remain
    assert store.stats().rows == 2


def test_a_step_back_expires_rows_by_elapsed_time(stores: Any) -> None:
    wall, mono = FakeClock(), FakeClock(start=50.0)
    store = stores(wall, mono, max_age_s=600.0)
    _tick(store, wall, mono, 100)
    wall.advance(BACK)  # the rows now look to be from the future
    _tick(store, wall, mono, 10)
    assert store.stats().rows == 110
    _tick(store, wall, mono, 1, step=700.0)  # 700 s later the first 110 are older than 600 s
    assert store.stats().rows == 1


def test_rows_after_an_emptied_store_are_not_aged_on_an_old_time_line(stores: Any) -> None:
    wall, mono = FakeClock(), FakeClock(start=50.0)
    store = stores(wall, mono, max_age_s=600.0)
    _tick(store, wall, mono, 10)
    wall.advance(BACK)
    _tick(store, wall, mono, 1)  # the step is noticed: rows 1..10 are an hour "ahead"
    wall.advance(700.0)
    mono.advance(700.0)
    assert store.enforce_retention() == 11  # all of them expired: the table is empty
    _tick(store, wall, mono, 5)  # SQLite numbers these from 1 again
    assert store.stats().rows == 5


def test_without_a_monotonic_clock_an_injected_clock_is_time_itself(tmp_path: Path) -> None:
    wall = FakeClock()
    options = StoreSettings(path=tmp_path / "s.db", max_age_s=600.0, retention_interval_s=0)
    with SqliteStore(options, clock=wall) as store:
        store.append(Sample(wall(), {"x": 1.0}))
        wall.advance(FORWARD)  # no monotonic clock given: this is time passing, not a step
        store.append(Sample(wall(), {"x": 1.0}))
        assert store.stats().rows == 1


@pytest.mark.slow
def test_sampler_store_and_health_across_steps_back_and_forward(
    tmp_path: Path, mosquitto: Broker
) -> None:
    f = run_clock_jumps(tmp_path, ticks=60, mqtt_port=mosquitto.port)
    back, forward = sorted(f["jumps"])
    # health: every message arrives once, numbered without a hole, at the interval throughout
    assert f["seqs"] == list(range(f["seqs"][0], f["seqs"][0] + len(f["seqs"])))
    assert f["max_health_gap_ticks"] <= 5
    assert back in f["health_ticks"] and forward in f["health_ticks"]
    # the sampler: never more than one sample a tick, one after a long gap
    assert f["max_samples_in_a_tick"] == 1 and f["sample_after_gap"] == 1
    # the store: the step forward deleted nothing; elapsed time expires rows normally
    rows = f["rows"]
    assert all(b >= a for a, b in itertools.pairwise(rows)), rows
    assert f["rows_after_expiry"] == 1
