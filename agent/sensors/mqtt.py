"""Readings that other devices already publish over MQTT (Tasmota, Zigbee2MQTT, ESPHome...).

Options:

    topics      a topic or list of topics (wildcards allowed), e.g. "tele/sonoff/SENSOR"
    fields      feature name -> path in the JSON payload, e.g. {temp_c = "AM2301.Temperature"}
    label       optional path of a ground-truth label in the payload
    host, port  broker, default 127.0.0.1:1883
    username, password, tls (false), ca_file, keepalive (60 s), qos (0), client_id
                (default: the broker assigns one)
    protocol    "auto" (default: MQTT v5, falling back to 3.1.1 when the broker refuses v5),
                "5" or "3.1.1"

The paho network thread keeps the latest value of each field; ``read()`` returns them as one
reading (stamped with the clock when the newest contributing message arrived) and clears them,
or returns nothing when no message came since the last read. Payloads that are not JSON, carry
none of the fields, or hold a non-number are counted in ``rejected()`` and never raise.
``read()`` raises ``SensorError`` while the broker is unreachable (paho keeps reconnecting).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.errors import SensorError
from agent.options import Options
from agent.sensors import payload
from agent.sensors.base import Clock, DriverBase, Feature
from agent.types import Reading

logger = logging.getLogger(__name__)

_UNSUPPORTED_PROTOCOL = (1, 0x84)  # 3.1.1 "unacceptable protocol version", v5 reason 132
_PROTOCOLS = {"5": MQTTProtocolVersion.MQTTv5, "3.1.1": MQTTProtocolVersion.MQTTv311}


class MqttDriver(DriverBase):
    """Subscribes to topics and maps JSON payload fields to features."""

    def __init__(self, name: str, *, clock: Clock, opts: Options) -> None:
        self._topics = opts.get_str_list("topics")
        self._fields = opts.get_str_map("fields")
        self._label_path = opts.optional_str("label")
        self._host = opts.get_str("host", "127.0.0.1")
        self._port = opts.get_int("port", 1883, low=1, high=65535)
        self._username = opts.optional_str("username")
        self._password = opts.optional_str("password")
        self._tls = opts.get_bool("tls", False)
        self._ca_file = str(opts.get_path("ca_file")) if opts.given("ca_file") else None
        self._keepalive = opts.get_int("keepalive", 60, low=5)
        self._qos = opts.get_int("qos", 0, choices=(0, 1, 2))
        self._client_id = opts.optional_str("client_id") or ""
        protocol = opts.get_str("protocol", "auto", choices=("auto", *_PROTOCOLS))
        opts.done()
        super().__init__(name, [Feature(f, "") for f in self._fields], clock)
        self._auto = protocol == "auto"
        self._protocol = _PROTOCOLS.get(protocol, MQTTProtocolVersion.MQTTv5)
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._closed = False
        self._connack_seen = False
        self._failure: str | None = None
        self._subscribed = threading.Event()
        self._pending: dict[str, float] = {}
        self._pending_ts = 0.0
        self._pending_label: str | None = None

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], *, clock: Clock) -> MqttDriver:
        return cls(name, clock=clock, opts=Options(f"sensors.{name}", options))

    @property
    def protocol(self) -> MQTTProtocolVersion:
        """The protocol version in use (after any fallback)."""
        return self._protocol

    @property
    def ready(self) -> bool:
        """Connected and subscribed (messages published from now on will arrive)."""
        return self._subscribed.is_set()

    def read(self) -> list[Reading]:
        with self._lock:
            if self._client is None and not self._closed:
                try:
                    self._start()
                except (OSError, ValueError) as exc:  # TLS setup (ssl.SSLError is an OSError)
                    self._client = None
                    raise SensorError(
                        f"sensor {self.name}: cannot start MQTT client: {exc}"
                    ) from exc
            failure, values, label = self._failure, self._pending, self._pending_label
            ts = self._pending_ts
            self._pending, self._pending_label = {}, None
        if not values:
            if failure is not None:
                raise SensorError(f"sensor {self.name}: {failure}")
            return []
        return [self._reading(values, ts=ts, label=label)]

    def close(self) -> None:
        with self._lock:
            client, self._client, self._closed = self._client, None, True
        if client is not None:
            client.disconnect()
            client.loop_stop()

    # -- paho side (network thread) -------------------------------------------------------

    def _start(self) -> None:
        """Create and start a client for ``self._protocol``; call with ``_lock`` held."""
        v5 = self._protocol == MQTTProtocolVersion.MQTTv5
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            protocol=self._protocol,
            clean_session=None if v5 else True,
        )
        if self._username is not None:
            client.username_pw_set(self._username, self._password)
        if self._tls:
            client.tls_set(ca_certs=self._ca_file)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.reconnect_delay_set(1, 30)
        self._connack_seen = False
        self._client = client
        client.connect_async(self._host, self._port, self._keepalive)
        client.loop_start()

    def _fall_back(self, client: mqtt.Client, why: str) -> None:
        with self._lock:
            if client is not self._client or self._closed:
                return
            logger.info(
                "sensor %s: broker %s:%d %s to MQTT v5; falling back to 3.1.1",
                self.name,
                self._host,
                self._port,
                why,
            )
            client.loop_stop()  # from its own thread: just asks the loop to end
            self._protocol = MQTTProtocolVersion.MQTTv311
            self._start()

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if client is not self._client:
            return
        self._connack_seen = True
        v5 = self._protocol == MQTTProtocolVersion.MQTTv5
        if reason.is_failure:
            if v5 and self._auto and reason.value in _UNSUPPORTED_PROTOCOL:
                self._fall_back(client, "answered 'unsupported protocol version'")
            else:
                self._failure = f"broker {self._host}:{self._port} refused the connection: {reason}"
            return
        self._failure = None
        client.subscribe([(topic, self._qos) for topic in self._topics])
        logger.info("sensor %s: subscribed to %s", self.name, ", ".join(self._topics))

    def _on_disconnect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if client is not self._client or self._closed:
            return
        self._subscribed.clear()
        v5 = self._protocol == MQTTProtocolVersion.MQTTv5
        if v5 and self._auto and not self._connack_seen:
            self._fall_back(client, "closed the connection instead of answering")
        else:
            self._failure = f"disconnected from broker {self._host}:{self._port}: {reason}"

    def _on_subscribe(
        self, client: mqtt.Client, _userdata: Any, _mid: int, reasons: Any, _props: Any
    ) -> None:
        if client is not self._client:
            return
        if any(r.is_failure for r in reasons):
            self._failure = f"broker refused the subscription to {self._topics}: {reasons}"
            return
        self._subscribed.set()

    def _on_connect_fail(self, client: mqtt.Client, _userdata: Any) -> None:
        if client is self._client:
            self._failure = f"cannot connect to broker {self._host}:{self._port}"

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._take_message(msg.topic, bytes(msg.payload))
        except Exception:  # paho re-raises callback errors and would kill its thread
            logger.exception("sensor %s: message on %s could not be handled", self.name, msg.topic)
            self._reject("error")

    def _take_message(self, topic: str, body: bytes) -> None:
        try:
            document = payload.parse(body)
        except (ValueError, UnicodeDecodeError, RecursionError):  # nested deeper than the parser
            logger.debug("sensor %s: payload on %s is not JSON", self.name, topic)
            self._reject("bad_json")
            return
        found: dict[str, float] = {}
        not_number = False
        for feature, path in self._fields.items():
            value = _lookup(document, path)
            if value is payload.MISSING:
                continue
            number = _as_number(value)
            if number is None:
                not_number = True
                continue
            found[feature] = number
        if not found:
            self._reject("not_a_number" if not_number else "missing_path")
            return
        label = None
        if self._label_path is not None:
            raw = _lookup(document, self._label_path)
            label = None if raw is payload.MISSING or raw is None else str(raw)
        with self._lock:
            self._pending.update(found)
            self._pending_ts = self._clock()
            if label is not None:
                self._pending_label = label


def _lookup(document: Any, path: str) -> Any:
    """``payload.lookup``, with a path part that only looks like an index (``"²"``) missing."""
    try:
        return payload.lookup(document, path)
    except ValueError:  # str.isdigit() holds for "²", int() refuses it
        return payload.MISSING


def _as_number(value: Any) -> float | None:
    """``payload.as_number``, with integers beyond float range as infinities (JSON allows any
    number of digits); the validator then counts them as out of range."""
    try:
        return payload.as_number(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
