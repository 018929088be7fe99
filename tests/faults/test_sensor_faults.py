"""A sensor driver that raises, hangs or misbehaves costs only its own sensor.

tests/agent/sensors/test_sampler.py covers a driver raising ``SensorError`` or an unexpected
exception, and a hung read being timed out and disabled. These add what a buggy third-party
driver does besides (``SystemExit``, a result that is not a list of readings, a failing
``rejected()``), a hung read that comes back, and the whole agent process with a driver that
blocks forever in ``read(2)`` next to one that raises.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agent.sensors.base import DriverBase, Feature
from agent.sensors.config import ConfiguredSensor, SensorSettings
from agent.sensors.sampler import Sampler, SamplerSettings
from agent.sensors.status import SensorState
from agent.types import Reading, Sample
from tests.fakes import FakeClock
from tests.faults.agent_scenarios import run_sensor_faults
from tests.waiting import wait_until


class Driver(DriverBase):
    """A driver whose ``read()`` is a test-supplied function."""

    def __init__(
        self, name: str, clock: Callable[[], float], behave: Callable[[Driver], Any]
    ) -> None:
        super().__init__(name, [Feature(f"{name}_v", "", 0.0, 100.0)], clock)
        self.behave = behave
        self.calls = 0

    def read(self) -> list[Reading]:
        self.calls += 1
        result: list[Reading] = self.behave(self)
        return result

    def good(self) -> list[Reading]:
        return [self._reading({f"{self.name}_v": 1.0})]


def sensor(driver: Driver, timeout_s: float = 1.0) -> ConfiguredSensor:
    config = SensorSettings(name=driver.name, driver="test", interval_s=1.0, timeout_s=timeout_s)
    return ConfiguredSensor(config, driver)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def _exit(_d: Driver) -> Any:
    sys.exit(3)


def _interrupt(_d: Driver) -> Any:
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("behave", "words"),
    [
        pytest.param(
            lambda d: None,
            "expected read() to return a list of Reading. Received: NoneType",
            id="returns_none",
        ),
        pytest.param(lambda d: {"x": 1.0}, "Received: dict", id="returns_a_dict"),
        pytest.param(lambda d: [{"x": 1.0}], "Received: list", id="returns_dicts"),
        pytest.param(_exit, "SystemExit: 3", id="sys_exit"),
        pytest.param(_interrupt, "KeyboardInterrupt", id="keyboard_interrupt"),
    ],
)
def test_a_misbehaving_driver_costs_only_its_own_sensor(
    clock: FakeClock, behave: Callable[[Driver], Any], words: str
) -> None:
    bad, good = Driver("bad", clock, behave), Driver("good", clock, Driver.good)
    samples: list[Sample] = []
    sampler = Sampler([sensor(bad), sensor(good)], samples.append, clock=clock)
    for _ in range(3):
        sampler.poll_once()
        clock.advance(1.0)
    assert [s.values for s in samples] == [{"good_v": 1.0}] * 3
    status = sampler.status()
    assert status["bad"].errors == 3 and words in (status["bad"].last_error or "")
    assert status["good"].state is SensorState.OK and status["good"].errors == 0


def test_the_sampling_thread_survives_a_driver_calling_sys_exit() -> None:
    bad = Driver("bad", time.time, _exit)
    good = Driver("good", time.time, Driver.good)
    samples: list[Sample] = []
    configs = [
        ConfiguredSensor(SensorSettings(name=d.name, driver="t", interval_s=0.02), d)
        for d in (bad, good)
    ]
    with Sampler(configs, samples.append, clock=time.time) as sampler:
        wait_until(lambda: bad.calls >= 3 and len(samples) >= 10, 10, "reads after SystemExit")
        assert sampler.running


def test_a_failing_rejected_costs_the_counts_not_the_status(clock: FakeClock) -> None:
    class NoCounts(Driver):
        def rejected(self) -> dict[str, int]:
            raise OSError("counter file gone")

    sampler = Sampler(
        [sensor(NoCounts("odd", clock, Driver.good)), sensor(Driver("good", clock, Driver.good))],
        lambda s: None,
        clock=clock,
    )
    sampler.poll_once()
    status = sampler.status()  # /healthz, /metrics and health all call this
    assert status["odd"].accepted == 1 and status["odd"].rejected == {}
    assert status["good"].accepted == 1


def test_a_hung_read_that_returns_lets_its_sensor_come_back(
    clock: FakeClock, release: threading.Event
) -> None:
    def stuck(d: Driver) -> list[Reading]:
        release.wait(30)
        return d.good()

    hung, good = Driver("hung", clock, stuck), Driver("good", clock, Driver.good)
    config = SamplerSettings(max_consecutive_errors=2, retry_disabled_s=10.0)
    samples: list[Sample] = []
    sampler = Sampler(
        [sensor(hung, timeout_s=0.1), sensor(good)], samples.append, clock=clock, config=config
    )
    for _ in range(3):
        sampler.poll_once()
        clock.advance(1.0)
    assert sampler.status()["hung"].state is SensorState.DISABLED and hung.calls == 1
    release.set()  # the bus comes back: the stuck read returns (its late result is dropped)
    wait_until(lambda: not sampler._slots[0].worker.busy, 5, "the hung read to end")
    clock.advance(10.0)
    sampler.poll_once()  # the probe after retry_disabled_s
    assert sampler.status()["hung"].state is SensorState.OK and hung.calls == 2
    assert samples[-1].values == {"hung_v": 1.0, "good_v": 1.0}
    assert len(samples) == 4  # the good sensor never missed a tick


@pytest.mark.slow
def test_the_agent_isolates_a_hanging_and_a_raising_driver(tmp_path: Any) -> None:
    figures = run_sensor_faults(tmp_path, seconds=2.0)
    assert figures["env_hz"] >= 5.0 and figures["stop_s"] < 15.0
