"""The sampling coordinator: polls every driver at its interval, validates, merges, hands on.

Each tick the due drivers are read concurrently, each in its own worker thread with its own
timeout, so a slow or hung driver costs only its own reading. Accepted readings of one tick
merge into one :class:`~agent.types.Sample` (stamped with the tick's clock time) for the sink;
when a driver returned several readings (a CSV replay catching up) the earlier ones become
samples of their own, in time order, before the merged one.

Per driver the sampler tracks ``ok -> failing -> disabled``: any error makes it ``failing``,
``max_consecutive_errors`` in a row disable it, and a disabled driver is probed again every
``retry_disabled_s`` (a success re-enables it). :meth:`Sampler.status` snapshots the counters
for ``/metrics`` and health.

Whatever a driver does stays with its sensor: an exception of any kind (``SystemExit`` too) or
a result that is not a list of readings counts as that sensor's error, never the tick's. The
schedule follows the injected wall clock but survives its steps: after a step back a sensor is
due at once rather than after the length of the step, and after a step forward it is read once,
not once per missed interval. A sink that fails (a full disk under the store) is counted in
``sink_errors`` and logged once per outage, not once per sample.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, replace
from types import TracebackType

from agent.errors import AgentError, SensorError
from agent.sensors.config import ConfiguredSensor, SensorSettings
from agent.sensors.status import SensorState, SensorStatus, SlotState
from agent.sensors.validate import ReadingValidator
from agent.sensors.worker import ReadWorker
from agent.types import Reading, Sample

logger = logging.getLogger(__name__)

Sink = Callable[[Sample], None]
StateListener = Callable[[str, SensorState, str | None], None]
_WAIT_SLICE_S = 0.05  # how often a tick waiting on reads looks at the stop flag


@dataclass(frozen=True)
class SamplerSettings:
    """Sampler-wide policy (per-sensor intervals and timeouts live in ``SensorSettings``)."""

    max_consecutive_errors: int = 5
    retry_disabled_s: float | None = 300.0
    rate_window_s: float = 60.0
    max_wait_s: float = 1.0  # longest idle wait, so a jumped clock is noticed


class _Slot:
    def __init__(self, sensor: ConfiguredSensor, validator: ReadingValidator) -> None:
        self.config = sensor.config
        self.driver = sensor.driver
        self.validator = validator
        self.worker = ReadWorker(sensor.driver)
        self.state = SlotState()
        self.next_due = 0.0


class Sampler:
    """Owns polling of the configured sensors; runs in a background thread."""

    def __init__(
        self,
        sensors: Sequence[ConfiguredSensor],
        sink: Sink,
        *,
        clock: Callable[[], float] = time.time,
        config: SamplerSettings | None = None,
        on_state_change: StateListener | None = None,
    ) -> None:
        self._config = config or SamplerSettings()
        self._clock = clock
        self._sink = sink
        self._on_state_change = on_state_change
        self._slots = [
            _Slot(
                s,
                ReadingValidator(
                    s.config.name,
                    s.driver.features,
                    clock=clock,
                    max_age_s=s.config.max_age_s,
                    ranges=s.config.ranges,
                ),
            )
            for s in sensors
        ]
        self._lock = threading.Lock()
        self._events: list[tuple[str, SensorState, str | None]] = []  # told after the lock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples_emitted = 0
        self.sink_errors = 0
        self.last_sink_error: str | None = None
        self._sink_streak = 0
        self._warned_rejected: set[str] = set()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None or self._stop.is_set():
            raise RuntimeError("a Sampler starts once; build a new one after stop()")
        self._thread = threading.Thread(target=self._run, name="sensor-sampler", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        """True while the sampling thread is alive (the watchdog's sign of progress)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling (promptly: an in-flight tick stops waiting) and close the drivers."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for slot in self._slots:
            slot.worker.stop()
            if slot.worker.busy:
                logger.warning("sensor %s: read still running; driver not closed", slot.driver.name)
                continue
            try:
                slot.driver.close()
            except Exception:
                logger.exception("sensor %s: close failed", slot.driver.name)

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def update(self, config: SamplerSettings, sensors: Sequence[SensorSettings] = ()) -> None:
        """Take new sampler-wide policy and per-sensor ``interval_s``/``timeout_s`` while
        running (a remote configuration change). Sensors not running here are ignored; a
        shorter interval is due at most one new interval from now."""
        now = self._clock()
        given = {s.name: s for s in sensors}
        with self._lock:
            self._config = replace(
                self._config,
                max_consecutive_errors=config.max_consecutive_errors,
                retry_disabled_s=config.retry_disabled_s,
            )
            for slot in self._slots:
                new = given.get(slot.config.name)
                if new is None:
                    continue
                slot.config = replace(
                    slot.config, interval_s=new.interval_s, timeout_s=new.timeout_s
                )
                slot.next_due = min(slot.next_due, now + new.interval_s)

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                logger.exception("sampler tick failed")
            self._stop.wait(self._idle_wait())

    def _idle_wait(self) -> float:
        now = self._clock()
        wakes = [self._wake_time(s) for s in self._slots]
        soonest = min((w for w in wakes if w is not None), default=now + self._config.max_wait_s)
        return min(max(soonest - now, 0.01), self._config.max_wait_s)

    def _wake_time(self, slot: _Slot) -> float | None:
        if slot.state.state is not SensorState.DISABLED:
            return slot.next_due
        retry = self._config.retry_disabled_s
        return None if retry is None else slot.state.disabled_at + retry

    # -- one tick ------------------------------------------------------------------------

    def poll_once(self) -> list[Sample]:
        """Read every due driver once, validate, merge and hand the samples to the sink."""
        now = self._clock()
        started = time.monotonic()
        futures: dict[_Slot, Future[list[Reading]]] = {}
        with self._lock:
            for slot in self._slots:
                _rebase(slot, now)
                wake = self._wake_time(slot)
                if wake is None or now < wake:
                    continue
                due = slot.next_due + slot.config.interval_s
                slot.next_due = due if due > now else now + slot.config.interval_s
                future = slot.worker.submit()
                if future is None:
                    self._error(slot, now, "previous read is still running (hung driver?)")
                else:
                    futures[slot] = future
        timed_out = self._wait(futures, started)
        accepted: list[tuple[_Slot, list[Reading]]] = []
        with self._lock:
            for slot, future in futures.items():
                if slot in timed_out:
                    if not self._stop.is_set():
                        self._error(slot, now, f"read took longer than {slot.config.timeout_s} s")
                    continue
                try:
                    readings = _readings(future.result())
                except BaseException as exc:  # the driver's thread's, not ours: its error
                    self._error(slot, now, _describe(slot, exc))
                    continue
                self._ok(slot)
                good = sorted(slot.validator.filter(readings), key=lambda r: r.ts)
                slot.state.count_accepted(now, len(good), self._config.rate_window_s)
                if good:
                    accepted.append((slot, good))
        self._flush_events()
        samples = _merge(now, accepted)
        for sample in samples:
            self._emit(sample)
        return samples

    def _wait(self, futures: dict[_Slot, Future[list[Reading]]], started: float) -> set[_Slot]:
        """Wait for the reads; returns the slots whose read missed its own timeout."""
        pending = dict(futures)
        timed_out: set[_Slot] = set()
        while pending:
            now = time.monotonic()
            for slot in [s for s, f in pending.items() if f.done()]:
                del pending[slot]
            for slot in [s for s in pending if now >= started + s.config.timeout_s]:
                timed_out.add(slot)
                del pending[slot]
            if not pending:
                break
            if self._stop.is_set():
                timed_out.update(pending)
                break
            deadline = min(started + s.config.timeout_s for s in pending)
            wait(pending.values(), min(deadline - now, _WAIT_SLICE_S), FIRST_COMPLETED)
        return timed_out

    def _emit(self, sample: Sample) -> None:
        try:
            self._sink(sample)
        except Exception as exc:
            self.sink_errors += 1
            self.last_sink_error = str(exc)
            self._sink_streak += 1
            if self._sink_streak > 1:
                return  # said once per outage; a full disk must not fill the journal too
            if isinstance(exc, AgentError):
                logger.error("sample sink failed; dropping samples until it recovers: %s", exc)
            else:
                logger.exception("sample sink failed; dropping samples until it recovers")
            return
        self.samples_emitted += 1
        if self._sink_streak:
            logger.warning("sample sink recovered; %d sample(s) dropped", self._sink_streak)
            self._sink_streak = 0

    # -- state (called with _lock held) --------------------------------------------------

    def _error(self, slot: _Slot, now: float, message: str) -> None:
        before = slot.state.state
        after = slot.state.record_error(now, message, self._config.max_consecutive_errors)
        if after is before:
            logger.debug("sensor %s: %s", slot.driver.name, message)
            return
        if after is SensorState.DISABLED:
            logger.error(
                "sensor %s: disabled after %d consecutive errors; last: %s",
                slot.driver.name,
                slot.state.consecutive_errors,
                message,
            )
        else:
            logger.warning("sensor %s: read failed: %s", slot.driver.name, message)
        self._notify(slot, after, message)

    def _ok(self, slot: _Slot) -> None:
        before = slot.state.state
        if slot.state.record_ok() is not before:
            logger.info("sensor %s: reading again (was %s)", slot.driver.name, before)
            self._notify(slot, SensorState.OK, None)

    def _notify(self, slot: _Slot, state: SensorState, message: str | None) -> None:
        self._events.append((slot.driver.name, state, message))

    def _flush_events(self) -> None:
        """Tell the listener about state changes, outside the lock (it may call status())."""
        with self._lock:
            events, self._events = self._events, []
        for name, state, message in events:
            if self._on_state_change is None:
                continue
            try:
                self._on_state_change(name, state, message)
            except Exception:
                logger.exception("sensor state listener failed")

    def status(self) -> dict[str, SensorStatus]:
        """A consistent snapshot of every sensor's state and counters."""
        now = self._clock()
        with self._lock:
            return {
                slot.driver.name: slot.state.snapshot(
                    slot.config,
                    slot.validator,
                    self._driver_rejected(slot),
                    now,
                    self._config.rate_window_s,
                )
                for slot in self._slots
            }

    def _driver_rejected(self, slot: _Slot) -> Mapping[str, int]:
        """The driver's own counts; a driver that fails here costs its counts, not the status."""
        try:
            return dict(slot.driver.rejected())
        except Exception as exc:
            if slot.driver.name not in self._warned_rejected:
                self._warned_rejected.add(slot.driver.name)
                logger.warning("sensor %s: rejected() failed: %r", slot.driver.name, exc)
            return {}


def _rebase(slot: _Slot, now: float) -> None:
    """After the clock stepped back, what was due "later" is due now, not after the step."""
    if slot.next_due > now + slot.config.interval_s:
        slot.next_due = now
    if slot.state.state is SensorState.DISABLED and slot.state.disabled_at > now:
        slot.state.disabled_at = now


def _readings(result: object) -> list[Reading]:
    if not isinstance(result, list) or not all(isinstance(r, Reading) for r in result):
        raise SensorError(
            f"expected read() to return a list of Reading. Received: {type(result).__name__}"
        )
    return result


def _describe(slot: _Slot, exc: BaseException) -> str:
    if isinstance(exc, SensorError):
        return str(exc)
    logger.error("sensor %s: driver raised %r", slot.driver.name, exc, exc_info=exc)
    return f"{type(exc).__name__}: {exc}"


def _merge(now: float, accepted: list[tuple[_Slot, list[Reading]]]) -> list[Sample]:
    backlog: list[Sample] = []
    values: dict[str, float] = {}
    label: str | None = None
    for _slot, readings in accepted:
        backlog.extend(Sample(r.ts, dict(r.values), r.label) for r in readings[:-1])
        values.update(readings[-1].values)
        label = label if label is not None else readings[-1].label
    backlog.sort(key=lambda s: s.ts)
    return [*backlog, Sample(now, values, label)] if values else backlog
