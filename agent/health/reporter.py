"""The agent's MQTT health reporter (docs/architecture.md, MQTT health).

    reporter = HealthReporter(cfg.mqtt, cfg.device_id, health=cfg.health, fleet=cfg.fleet,
                              snapshot=runner_sections, birth=runner_birth)
    reporter.start()                 # connects in the background; never blocks on the broker
    reporter.set_state("ready")
    reporter.event("model_swap", {"from": "2", "to": "3"})
    reporter.stop()                  # retained "disconnected", then a clean DISCONNECT

Topics: retained ``status`` (Last Will ``lost``, ``session`` +1 per connect), retained ``birth``,
``health`` every ``health_interval_s`` and on significant change, non-retained ``event``.
``health`` and ``event`` go through the outbox: one message in flight at a time, deleted only
after its PUBACK, so order holds across broker restarts and at most the outbox bound is lost.

Threads: paho's network loop (inside the transport) and one worker here that samples the board
every ``sample_s`` and drains the outbox.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from agent.health.change import Buckets, degraded, signature
from agent.health.codec import MAX_STR
from agent.health.compose import BirthSnapshot, Composer, HealthSnapshot
from agent.health.facts import BoardFacts, SystemSampler
from agent.health.hass import BIRTH_PAYLOAD, discovery_configs
from agent.health.outbox import Outbox, Queued, SqliteOutbox
from agent.health.schema import (
    Ack,
    BirthParts,
    Event,
    HealthParts,
    SchemaError,
    Status,
    Topics,
)
from agent.health.settings import BrokerSettings, HealthSettings
from agent.health.state import ReporterState
from agent.health.transport import Delivery, PahoTransport, Transport, Will

logger = logging.getLogger(__name__)

REQUESTABLE: Final = ("init", "ready", "alert")
ACK_SLICE_S: Final = 0.25
MessageHandler = Callable[[str, bytes], None]


def _no_parts() -> HealthParts:
    return HealthParts()


def _no_birth_parts() -> BirthParts:
    return BirthParts()


class HealthReporter:
    def __init__(
        self,
        mqtt: BrokerSettings,
        device_id: str,
        *,
        health: HealthSettings | None = None,
        fleet: str | None = None,
        snapshot: HealthSnapshot = _no_parts,
        birth: BirthSnapshot = _no_birth_parts,
        clock: Callable[[], float] = time.time,
        transport: Transport | None = None,
        outbox: Outbox | None = None,
        facts: BoardFacts | None = None,
    ) -> None:
        self.settings = health or HealthSettings()
        self.interval_s = mqtt.health_interval_s
        self.device_id = device_id
        self.fleet = fleet
        self.topics = Topics(device_id, fleet, mqtt.topic_prefix)
        self.clock = clock
        s = self.settings
        self.outbox = outbox or SqliteOutbox(s.outbox_path, s.outbox_max)
        self.state = ReporterState(s.state_path)
        self.transport: Transport = transport or PahoTransport(
            mqtt,
            f"orchard-{device_id}",
            reconnect_min_s=s.reconnect_min_s,
            reconnect_max_s=s.reconnect_max_s,
        )
        self.facts = facts or BoardFacts(s.facts_root)
        self._composer = Composer(self.facts, SystemSampler(), snapshot=snapshot, birth=birth)
        self._buckets = Buckets.from_settings(s)
        self._lock = threading.RLock()
        self._requested = "init"
        self._state = "init"
        self._reasons: tuple[str, ...] = ()
        self._pending_session = 0
        # The retained status is published only once the connect hook has committed this
        # connection's session, and one at a time: else a status composed before the commit
        # (session of the previous connection) could reach the broker last and stay retained.
        self._status_lock = threading.Lock()
        self._online = False
        self._last_sent: float | None = None
        self._last_change: float | None = None
        self._last_sig: tuple[object, ...] | None = None
        self._force = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._inflight: tuple[Queued, Delivery] | None = None
        self._thread: threading.Thread | None = None
        self._handlers: dict[str, MessageHandler] = {}
        self.sent = 0

    # -- public API -------------------------------------------------------------------------

    def start(self) -> None:
        self.transport.start(_Hooks(self))
        self._force.set()
        self._thread = threading.Thread(target=self._run, name="health-reporter", daemon=True)
        self._thread.start()

    def subscribe(self, topic: str, handler: MessageHandler) -> None:
        """Call ``handler(topic, payload)`` for messages on ``topic`` (no wildcards), on every
        connection. It runs on the MQTT network thread: it must be quick and must not raise
        (an exception is logged and dropped); hand work to another thread."""
        if any(c in topic for c in "+#") or not topic:
            raise SchemaError("topic", topic, "a topic name without wildcards")
        with self._lock:
            self._handlers[topic] = handler
        if self.transport.connected:
            self.transport.subscribe(topic)

    def set_state(self, state: str) -> None:
        """The runner's state (init, ready, alert); ``alert`` is also entered when degraded."""
        if state not in REQUESTABLE:
            raise SchemaError("state", state, f"one of {', '.join(REQUESTABLE)}")
        with self._lock:
            self._requested = state
            self._update_state(self._reasons)
        self._force.set()
        self._wake.set()

    def event(self, kind: str, data: Mapping[str, Any] | None = None) -> bool:
        """Queue an ``event``; a bad one is logged and dropped (returns False), never raised."""
        try:
            short = {k: _shorten(v) for k, v in (data or {}).items()}
            event = Event.validate({"kind": kind, "ts": self.clock(), "data": short})
        except SchemaError as exc:
            logger.warning("health event dropped: %s", exc)
            return False
        self._enqueue(self.topics.event, event.to_json())
        return True

    def ack(self, ack: Ack) -> None:
        """Queue the answer to a command on ``<base>/ack``: through the outbox, like events,
        so it survives a broker outage and keeps its order."""
        self._enqueue(self.topics.ack, ack.to_json())

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sampling, publish retained ``disconnected`` and disconnect cleanly."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._status_lock:
            self._online = False
        final = Status(state="disconnected", session=self.state.session, ts=self.clock())
        self.transport.stop(Will(self.topics.status, final.to_json()), timeout)
        self.outbox.close()

    @property
    def current_state(self) -> str:
        return self._state

    # -- worker -----------------------------------------------------------------------------

    def _run(self) -> None:
        next_tick = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_tick or self._force.is_set():
                    next_tick = time.monotonic() + self.settings.sample_s
                    self.tick()
                if self.transport.connected and self._drain_one():
                    continue
            except Exception:  # health must never take the agent down
                logger.exception("health reporter iteration failed")
            self._wake.wait(max(0.0, min(next_tick - time.monotonic(), ACK_SLICE_S)))
            self._wake.clear()

    def tick(self) -> None:
        """Sample once; queue ``health`` when the interval is due or something changed."""
        with self._lock:
            now = self.clock()
            health = self._composer.health(now, 0, self.outbox.stats())
            self._update_state(degraded(health, self.settings.alert_temp_c))
            forced = self._force.is_set()
            self._force.clear()
            sig = signature(health, self._buckets)
            due = _elapsed(now, self._last_sent, self.interval_s)
            gap_ok = _elapsed(now, self._last_change, self.settings.min_change_gap_s)
            changed = sig != self._last_sig and gap_ok
            if not (due or changed or forced):
                return
            if changed or forced:
                self._last_change = now
            self._last_sig, self._last_sent = sig, now
            health = dataclasses.replace(health, seq=self.state.next_seq())
        self._enqueue(self.topics.health, health.to_json())

    def _enqueue(self, topic: str, payload: str) -> None:
        dropped = self.outbox.put(topic, payload)
        if dropped:
            logger.warning("health outbox full: dropped %d oldest message(s)", dropped)
        self._wake.set()

    def _drain_one(self) -> bool:
        """Send the oldest queued message; True once it is acked (then the next may go)."""
        if self._inflight is None:
            item = self.outbox.peek()
            if item is None:
                return False
            self._inflight = (item, self.transport.publish(item.topic, item.payload, retain=False))
        item, delivery = self._inflight
        if delivery.wait(ACK_SLICE_S):
            self.outbox.ack(item.id)
            self._inflight = None
            self.sent += 1
            return True
        if delivery.lost:
            self._inflight = None  # its client is gone: publish it again
        return False

    # -- state ------------------------------------------------------------------------------

    def _update_state(self, reasons: tuple[str, ...]) -> None:
        with self._lock:
            requested = self._requested
            alert = requested == "alert" or (requested == "ready" and bool(reasons))
            state = "alert" if alert else requested
            shown = reasons if state == "alert" else ()
            if (state, shown) == (self._state, self._reasons):
                return
            old, self._state, self._reasons = self._state, state, shown
        logger.info("health state %s -> %s %s", old, state, ",".join(shown))
        self._publish_status()
        if old != state:  # new reasons within the same state only refresh the status
            self.event("state_change", {"from": old, "to": state, "reasons": ",".join(shown)})
        self._force.set()

    def _status(self) -> Status:
        return Status(
            state=self._state,  # type: ignore[arg-type]
            session=self.state.session,
            ts=self.clock(),
            reasons=self._reasons,
        )

    def _publish_status(self) -> None:
        with self._status_lock:
            if self._online:
                self.transport.publish(self.topics.status, self._status().to_json(), retain=True)

    # -- transport hooks (network thread) ---------------------------------------------------

    def _will(self) -> Will:
        self._pending_session = self.state.session + 1
        lost = Status(state="lost", session=self._pending_session, ts=self.clock())
        return Will(self.topics.status, lost.to_json())

    def _connected(self, protocol: str) -> None:
        publish = self.transport.publish
        with self._status_lock:  # never take self._lock while holding this one
            self.state.commit_session(self._pending_session)
            self._online = not self._stop.is_set()
            if self._online:
                publish(self.topics.status, self._status().to_json(), retain=True)
        birth = self._composer.birth(
            device_id=self.device_id,
            fleet=self.fleet,
            session=self.state.session,
            now=self.clock(),
            interval_s=self.interval_s,
        )
        publish(self.topics.birth, birth.to_json(), retain=True)
        with self._lock:
            topics = list(self._handlers)
        for topic in topics:
            self.transport.subscribe(topic)
        if self.settings.ha_discovery:
            self.transport.subscribe(f"{self.settings.ha_prefix}/status")
            self._publish_discovery()
        self._wake.set()

    def _disconnected(self) -> None:
        with self._status_lock:
            self._online = False
        self._wake.set()

    def _publish_discovery(self) -> None:
        configs = discovery_configs(self.topics, self.settings.ha_prefix, model=self.facts.model())
        for topic, payload in configs:
            self.transport.publish(topic, payload, retain=True)

    def _message(self, topic: str, payload: bytes) -> None:
        handler = self._handlers.get(topic)
        if handler is not None:
            try:
                handler(topic, payload)
            except Exception:
                logger.exception("handler for %s failed", topic)
            return
        ha_status = f"{self.settings.ha_prefix}/status"
        if self.settings.ha_discovery and topic == ha_status and payload == BIRTH_PAYLOAD.encode():
            logger.info("Home Assistant is online; republishing discovery")
            self._publish_discovery()


def _elapsed(now: float, since: float | None, period: float) -> bool:
    """Whether ``period`` has passed since ``since`` on the wall clock.

    A clock that stepped back (``now < since``) counts as passed: else health would pause for
    the length of the step.
    """
    if since is None:
        return True
    return not 0 <= now - since < period


class _Hooks:
    """Adapter so the transport's callbacks stay private to the reporter."""

    def __init__(self, reporter: HealthReporter) -> None:
        self._r = reporter

    def will(self) -> Will:
        return self._r._will()

    def connected(self, protocol: str) -> None:
        self._r._connected(protocol)

    def disconnected(self) -> None:
        self._r._disconnected()

    def message(self, topic: str, payload: bytes) -> None:
        self._r._message(topic, payload)


def _shorten(value: Any) -> Any:
    """A string the event schema can carry (``MAX_STR``): a path keeps its end (the file name),
    other text its start and end, with "…" where it was cut. Anything else passes unchanged."""
    if not isinstance(value, str) or len(value) <= MAX_STR:
        return value
    if "/" in value and " " not in value:
        return "…" + value[-(MAX_STR - 1) :]
    head = MAX_STR // 2
    return value[:head] + "…" + value[-(MAX_STR - head - 1) :]
