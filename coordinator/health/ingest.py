"""MQTT health ingest: subscribe to every device's topics, validate, store in the registry.

Status, birth, health and event messages, and each ``ack`` a device sends for a remote
configuration command (the registry's ``acks``, which ``orchard-coordinator config`` reads),
go through the same batches.

One paho-mqtt 2.x client on its own network thread. ``protocol="auto"`` tries MQTT 5 and falls
back to 3.1.1 when the broker refuses it (the embedded amqtt broker does); paho reconnects on
its own after the broker goes away. Paho's thread only queues each message (so the broker's
per-client queue never overflows during a connect storm); a writer thread validates and
stores them in batches, one SQLite transaction per batch. A message that fails validation is
counted (``orchard_health_invalid_messages_total``) and logged, and the ingest carries on::

    ingest = HealthIngest(settings.mqtt, "127.0.0.1", 1883, registry, metrics)
    ingest.start()
    ingest.wait_subscribed(10)
    ...
    ingest.stop()
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.health.schema import (
    Birth,
    SchemaError,
    decode_payload,
    is_downlink,
    parse_topic,
    subscriptions,
)
from coordinator.errors import CoordinatorError
from coordinator.health.metrics import HealthMetrics
from coordinator.health.registry import Clock, Message, Registry
from coordinator.health.settings import FleetMqttSettings

logger = logging.getLogger(__name__)

_UNSUPPORTED_PROTOCOL: Final = (1, 0x84)  # 3.1.1 "unacceptable protocol version", v5 reason 132
_PROTOCOLS: Final = {"5": MQTTProtocolVersion.MQTTv5, "3.1.1": MQTTProtocolVersion.MQTTv311}
_WARN_EVERY_S: Final = 10.0
_QUEUE_MAX: Final = 100_000  # ~8 minutes of 1,000 devices at 0.2 Hz
_BATCH_MAX: Final = 500
_DRAIN_TIMEOUT_S: Final = 10.0
_CONNACK_TIMEOUT_S: Final = 3.0


class HealthIngest:
    def __init__(
        self,
        settings: FleetMqttSettings,
        host: str,
        port: int,
        registry: Registry,
        metrics: HealthMetrics | None = None,
        *,
        clock: Clock = time.time,
    ) -> None:
        self.settings = settings
        self.host, self.port = host, port
        self.registry = registry
        self.metrics = metrics or HealthMetrics()
        self._clock = clock
        self._auto = settings.protocol == "auto"
        self._protocol = _PROTOCOLS.get(settings.protocol, MQTTProtocolVersion.MQTTv5)
        prefix = settings.topic_prefix
        self._topics = (
            (f"{prefix}/{settings.fleet}/+/+",) if settings.fleet else subscriptions(prefix)
        )
        self._client_id = settings.client_id or f"orchard-coordinator-{uuid.uuid4().hex[:12]}"
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._connack_seen = False
        self._closed = False
        self._subscribed = threading.Event()
        self._queue: queue.Queue[tuple[str, bytes, bool, float]] = queue.Queue(_QUEUE_MAX)
        self._stopping = threading.Event()
        self._writer: threading.Thread | None = None
        self._received = self._handled = 0  # each written by one thread only
        self._last_warning = float("-inf")
        self._suppressed = 0
        self._retained: dict[str, str] = {}  # what this coordinator publishes to devices

    @property
    def protocol(self) -> str:
        """The MQTT version in use after any fallback: ``"5"`` or ``"3.1.1"``."""
        return "5" if self._protocol == MQTTProtocolVersion.MQTTv5 else "3.1.1"

    def start(self) -> None:
        self._stopping.clear()
        self._writer = threading.Thread(target=self._write_loop, name="orchard-ingest", daemon=True)
        self._writer.start()
        with self._lock:
            self._closed = False
            self._start()

    def drained(self) -> bool:
        """Whether every received message has been stored (or refused)."""
        return self._handled >= self._received

    def publish_retained(self, topic: str, payload: str) -> None:
        """Publish ``payload`` retained (QoS 1) on a downlink topic, now if connected and
        again after every reconnection: a broker that lost its retained messages (the embedded
        one keeps them in memory) gets them back."""
        with self._lock:
            self._retained[topic] = payload
            client = self._client if self._subscribed.is_set() else None
        if client is not None:
            client.publish(topic, payload, qos=1, retain=True)

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    def stop(self) -> None:
        with self._lock:
            client, self._client, self._closed = self._client, None, True
        self._subscribed.clear()
        self.metrics.connected.set(0)
        if client is not None:
            client.disconnect()
            client.loop_stop()
        self._stopping.set()  # the writer stores what is queued, then ends
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.join(_DRAIN_TIMEOUT_S)
            if writer.is_alive():
                logger.warning("ingest writer still busy after %s s", _DRAIN_TIMEOUT_S)

    # -- paho side (network thread) ---------------------------------------------------------

    def _start(self) -> None:
        """Create and start a client for ``self._protocol``; call with ``_lock`` held."""
        s = self.settings
        v5 = self._protocol == MQTTProtocolVersion.MQTTv5
        persistent = s.client_id is not None  # a named client keeps its queue across restarts
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            protocol=self._protocol,
            clean_session=None if v5 else not persistent,
        )
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls_ca is not None:
            try:
                client.tls_set(ca_certs=s.tls_ca, certfile=s.tls_cert, keyfile=s.tls_key)
            except (OSError, ValueError) as exc:
                raise CoordinatorError(f"mqtt TLS files unusable: {exc}") from exc
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 10)
        self._connack_seen = False
        self._client = client
        props = None
        if v5 and persistent:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        clean_start = (not persistent) if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY
        client.connect_async(
            self.host, self.port, s.keepalive_s, clean_start=clean_start, properties=props
        )
        client.loop_start()
        if v5 and self._auto:
            timer = threading.Timer(_CONNACK_TIMEOUT_S, self._connack_timeout, args=(client,))
            timer.daemon = True
            timer.start()

    def _connack_timeout(self, client: mqtt.Client) -> None:
        """Some brokers (amqtt) stall on a v5 CONNECT with properties instead of refusing it."""
        sock = client.socket()
        if client is self._client and not self._connack_seen and sock is not None:
            self._fall_back(client, f"did not answer within {_CONNACK_TIMEOUT_S:g} s")
            with contextlib.suppress(OSError):
                sock.close()  # the stalled connection; its loop has stopped

    def _fall_back(self, client: mqtt.Client, why: str) -> None:
        with self._lock:
            if client is not self._client or self._closed:
                return
            logger.info(
                "broker %s:%d %s to an MQTT 5 CONNECT; using 3.1.1", self.host, self.port, why
            )
            client.loop_stop()  # from its own thread: only asks the loop to end
            self._protocol = MQTTProtocolVersion.MQTTv311
            self._start()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if client is not self._client:
            return
        self._connack_seen = True
        if reason.is_failure:
            v5 = self._protocol == MQTTProtocolVersion.MQTTv5
            if v5 and self._auto and reason.value in _UNSUPPORTED_PROTOCOL:
                self._fall_back(client, "answered 'unsupported protocol version'")
            else:
                logger.warning("broker %s:%d refused the ingest: %s", self.host, self.port, reason)
            return
        client.subscribe([(topic, 1) for topic in self._topics])

    def _on_subscribe(self, client: mqtt.Client, _u: Any, _m: int, reasons: Any, _p: Any) -> None:
        if client is not self._client:
            return
        if any(r.is_failure for r in reasons):
            logger.warning("broker refused the subscription to %s: %s", self._topics, reasons)
            return
        logger.info(
            "health ingest subscribed to %s (MQTT %s)", ", ".join(self._topics), self.protocol
        )
        self.metrics.connected.set(1)
        with self._lock:
            self._subscribed.set()
            retained = list(self._retained.items())
        for topic, payload in retained:
            client.publish(topic, payload, qos=1, retain=True)

    def _on_disconnect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if client is not self._client or self._closed:
            return
        self._subscribed.clear()
        self.metrics.connected.set(0)
        v5 = self._protocol == MQTTProtocolVersion.MQTTv5
        if v5 and self._auto and not self._connack_seen:
            self._fall_back(client, "closed the connection instead of answering")
        else:
            logger.warning(
                "health ingest lost broker %s:%d (%s); reconnecting", self.host, self.port, reason
            )

    def _on_message(self, _client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        item = (msg.topic, bytes(msg.payload), bool(msg.retain), self._clock())
        try:
            self._queue.put_nowait(item)
            self._received += 1
        except queue.Full:
            self.metrics.dropped.inc()
            self._warn("ingest queue full (%d): dropped a message on %s", _QUEUE_MAX, msg.topic)

    def _write_loop(self) -> None:
        """Validate and store queued messages in batches until stopped and drained."""
        while True:
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                continue
            batch = [first]
            with contextlib.suppress(queue.Empty):
                while len(batch) < _BATCH_MAX:
                    batch.append(self._queue.get_nowait())
            try:
                self._store(batch)
            except Exception:  # never let a bug end the writer
                self.metrics.invalid.labels("store").inc(len(batch))
                logger.exception("unexpected error storing %d health messages", len(batch))
            self._handled += len(batch)

    def _store(self, batch: list[tuple[str, bytes, bool, float]]) -> None:
        messages: list[Message] = []
        for topic, data, retained, received in batch:
            try:
                m = self._validate(topic, data, retained, received)
            except Exception as exc:  # a bug in validation costs this message, not the batch
                self.metrics.invalid.labels("error").inc()
                self._warn("unexpected error validating a message on %s: %r", topic, exc)
                continue
            if m is not None:
                messages.append(m)
        try:
            self.registry.record_many(messages)
            stored = messages
        except (CoordinatorError, OverflowError):
            # One bad message rolls back the whole transaction: store them one by one, so it
            # costs only itself (OverflowError: sqlite3 on an integer beyond signed 64 bits).
            stored = [m for m in messages if self._store_one(m)]
        now = self._clock()
        for m in stored:
            self.metrics.ingested.labels(type(m.payload).__name__.lower()).inc()
            if not m.retained:
                self.metrics.latency.observe(max(0.0, now - m.payload.ts))

    def _store_one(self, message: Message) -> bool:
        try:
            self.registry.record_many([message])
        except (CoordinatorError, OverflowError) as exc:
            self.metrics.invalid.labels("store").inc()
            self._warn("could not store a health message from %s: %s", message.device_id, exc)
            return False
        return True

    def _validate(self, topic: str, data: bytes, retained: bool, received: float) -> Message | None:
        kind = "topic"
        if is_downlink(topic):  # what the coordinator itself publishes to devices
            return None
        try:
            parts = parse_topic(topic, self.settings.topic_prefix)
            kind = parts.kind
            if not data:  # a retained message being cleared
                return None
            payload = decode_payload(kind, data)
            if isinstance(payload, Birth) and payload.device_id != parts.device_id:
                raise SchemaError(
                    "birth.device_id", payload.device_id, f"{parts.device_id!r} (the topic's)"
                )
        except SchemaError as exc:
            self.metrics.invalid.labels(kind).inc()
            self._warn("refused a message on %s: %s", topic, exc)
            return None
        raw = data.decode() if kind in ("health", "birth") else None
        return Message(parts.device_id, parts.fleet, payload, received, retained, raw)

    def _warn(self, fmt: str, *args: Any) -> None:
        """Log at most one warning per 10 s (a misbehaving device must not flood the log)."""
        now = time.monotonic()
        if now - self._last_warning < _WARN_EVERY_S:
            self._suppressed += 1
            logger.debug(fmt, *args)
            return
        if self._suppressed:
            logger.warning(
                "%d more refused messages in the last %.0f s (see debug log)",
                self._suppressed,
                now - self._last_warning,
            )
        self._last_warning, self._suppressed = now, 0
        logger.warning(fmt, *args)
