"""Sampler: merging, validation, isolation of raising and hanging drivers, start/stop."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from agent.errors import SensorError
from agent.sensors.base import DriverBase, Feature
from agent.sensors.config import ConfiguredSensor, SensorSettings
from agent.sensors.sampler import Sampler, SamplerSettings
from agent.sensors.status import SensorState
from agent.types import Reading, Sample
from tests.waiting import wait_until

from .conftest import FakeClock


class ScriptedDriver(DriverBase):
    """A driver whose read() runs a test-supplied function."""

    def __init__(
        self,
        name: str,
        clock: Callable[[], float],
        feature: str,
        behave: Callable[[ScriptedDriver], list[Reading]] | None = None,
    ) -> None:
        super().__init__(name, [Feature(feature, "", 0.0, 100.0)], clock)
        self.feature = feature
        self.behave = behave or (lambda d: [d.value(42.0)])
        self.calls = 0
        self.closed = False

    def value(self, v: float, label: str | None = None) -> Reading:
        return self._reading({self.feature: v}, label=label)

    def read(self) -> list[Reading]:
        self.calls += 1
        return self.behave(self)

    def close(self) -> None:
        self.closed = True


def sensor(
    driver: ScriptedDriver, interval_s: float = 1.0, timeout_s: float = 1.0
) -> ConfiguredSensor:
    config = SensorSettings(
        name=driver.name, driver="scripted", interval_s=interval_s, timeout_s=timeout_s
    )
    return ConfiguredSensor(config, driver)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An event hanging drivers wait on; set at teardown so their threads end."""
    event = threading.Event()
    yield event
    event.set()


def test_one_tick_merges_drivers_into_one_sample(clock: FakeClock) -> None:
    a = ScriptedDriver("a", clock, "x", lambda d: [d.value(1.0, label="on")])
    b = ScriptedDriver("b", clock, "y", lambda d: [d.value(2.0)])
    samples: list[Sample] = []
    sampler = Sampler([sensor(a), sensor(b, interval_s=3.0)], samples.append, clock=clock)
    assert sampler.poll_once() == [Sample(clock.now, {"x": 1.0, "y": 2.0}, "on")]
    for _ in range(3):
        clock.advance(1.0)
        sampler.poll_once()
    assert [sorted(s.values) for s in samples] == [["x", "y"], ["x"], ["x"], ["x", "y"]]
    assert (a.calls, b.calls) == (4, 2)
    status = sampler.status()
    assert status["a"].accepted == 4 and status["a"].state is SensorState.OK
    assert status["a"].rate_hz == pytest.approx(4 / 3)
    assert sampler.samples_emitted == 4


def test_rejected_readings_are_counted_never_passed_on(clock: FakeClock) -> None:
    values = iter([math.nan, 500.0, 7.0])
    a = ScriptedDriver("a", clock, "x", lambda d: [d.value(next(values))])
    a._reject("bad_json")  # a drop the driver itself counted
    samples: list[Sample] = []
    sampler = Sampler([sensor(a)], samples.append, clock=clock)
    for _ in range(3):
        sampler.poll_once()
        clock.advance(1.0)
    assert [s.values for s in samples] == [{"x": 7.0}]
    status = sampler.status()["a"]
    assert status.rejected == {"nan": 1, "out_of_range": 1, "bad_json": 1}
    assert status.rejected_total == 3 and status.accepted == 1


def test_backlog_readings_become_their_own_samples(clock: FakeClock) -> None:
    now = clock.now
    a = ScriptedDriver(
        "a", clock, "x", lambda d: [d._reading({"x": v}, ts=now - 3 + v) for v in (0.0, 1.0, 2.0)]
    )
    b = ScriptedDriver("b", clock, "y")
    samples: list[Sample] = []
    Sampler([sensor(a), sensor(b)], samples.append, clock=clock).poll_once()
    assert samples == [
        Sample(now - 3, {"x": 0.0}),
        Sample(now - 2, {"x": 1.0}),
        Sample(now, {"x": 2.0, "y": 42.0}),
    ]


def test_raising_driver_is_disabled_others_keep_running(clock: FakeClock) -> None:
    healthy = True

    def flaky(d: ScriptedDriver) -> list[Reading]:
        if not healthy:
            raise SensorError("bus on fire")
        return [d.value(1.0)]

    bad = ScriptedDriver("bad", clock, "x", flaky)
    good = ScriptedDriver("good", clock, "y")
    events: list[tuple[str, SensorState, str | None]] = []

    def listen(name: str, state: SensorState, message: str | None) -> None:
        events.append((name, state, message))
        sampler.status()  # a listener may look at the sampler (no deadlock)

    samples: list[Sample] = []
    config = SamplerSettings(max_consecutive_errors=3, retry_disabled_s=60.0)
    sampler = Sampler(
        [sensor(bad), sensor(good)],
        samples.append,
        clock=clock,
        config=config,
        on_state_change=listen,
    )
    sampler.poll_once()
    healthy = False
    for _ in range(6):
        clock.advance(1.0)
        sampler.poll_once()
    assert bad.calls == 4  # 1 good + 3 failures, then disabled
    assert good.calls == 7 and len(samples) == 7
    status = sampler.status()["bad"]
    assert status.state is SensorState.DISABLED and status.errors == 3
    assert status.consecutive_errors == 3 and status.last_error == "bus on fire"
    assert [e[1] for e in events] == [SensorState.FAILING, SensorState.DISABLED]

    healthy = True
    clock.advance(60.0)
    sampler.poll_once()  # probe after retry_disabled_s succeeds
    assert sampler.status()["bad"].state is SensorState.OK
    assert events[-1] == ("bad", SensorState.OK, None)


def test_unexpected_exception_is_isolated_too(clock: FakeClock) -> None:
    def buggy(_d: ScriptedDriver) -> list[Reading]:
        raise ZeroDivisionError("oops")

    bad = ScriptedDriver("bad", clock, "x", buggy)
    samples: list[Sample] = []
    Sampler(
        [sensor(bad), sensor(ScriptedDriver("ok", clock, "y"))], samples.append, clock=clock
    ).poll_once()
    assert samples[0].values == {"y": 42.0}


def test_hanging_driver_does_not_stall_others(clock: FakeClock, release: threading.Event) -> None:
    hung = ScriptedDriver("hung", clock, "x", lambda d: [d.value(1.0)] if release.wait(30) else [])
    good = ScriptedDriver("good", clock, "y")
    samples: list[Sample] = []
    config = SamplerSettings(max_consecutive_errors=3)
    sampler = Sampler(
        [sensor(hung, timeout_s=0.2), sensor(good)], samples.append, clock=clock, config=config
    )
    started = time.monotonic()
    for _ in range(4):
        sampler.poll_once()
        clock.advance(1.0)
    assert time.monotonic() - started < 2.0  # one 0.2 s timeout, then "still running"
    assert [s.values for s in samples] == [{"y": 42.0}] * 4
    status = sampler.status()["hung"]
    assert status.state is SensorState.DISABLED and hung.calls == 1
    assert "still running" in (status.last_error or "")


def test_sink_errors_are_counted_and_survived(clock: FakeClock) -> None:
    def sink(_s: Sample) -> None:
        raise OSError("disk full")

    sampler = Sampler([sensor(ScriptedDriver("a", clock, "x"))], sink, clock=clock)
    sampler.poll_once()
    assert sampler.sink_errors == 1 and sampler.samples_emitted == 0


def test_background_thread_start_and_prompt_stop(release: threading.Event) -> None:
    fast = ScriptedDriver("fast", time.time, "x")
    hung = ScriptedDriver(
        "hung", time.time, "y", lambda d: [d.value(1.0)] if release.wait(30) else []
    )
    samples: list[Sample] = []
    sampler = Sampler(
        [sensor(fast, interval_s=0.05), sensor(hung, interval_s=0.05, timeout_s=30)], samples.append
    )
    with sampler:
        wait_until(lambda: hung.calls)  # the hung read is in flight: the tick is waiting on it
        started = time.monotonic()
    assert time.monotonic() - started < 1.0
    assert fast.closed and not hung.closed  # a driver still inside read() is not closed
    with pytest.raises(RuntimeError):
        sampler.start()


def test_background_thread_samples_at_the_interval() -> None:
    fast = ScriptedDriver("fast", time.time, "x", lambda d: [d.value(1.0)])
    samples: list[Sample] = []
    with Sampler([sensor(fast, interval_s=0.02)], samples.append):
        wait_until(lambda: len(samples) >= 5, timeout=5.0)
    assert all(s.values == {"x": 1.0} for s in samples)
    assert all(b.ts > a.ts for a, b in itertools.pairwise(samples))
