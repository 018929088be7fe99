"""A short-lived MQTT client of its own that publishes commands retained, QoS 1.

``orchard-coordinator config set`` runs in its own process, so it connects to the broker
itself with ``coordinator.toml [mqtt]`` as the ingest does (host, port, TLS files, username and
password; the embedded broker of a running coordinator listens on ``embedded_host:port``),
under a client id of its own (never ``[mqtt] client_id``: the broker would drop the ingest's
session for it). MQTT 3.1.1 unless ``protocol = "5"``: both brokers Orchard runs with speak
it. Every wait is bounded by ``timeout``::

    with CommandLink.connect(settings.health.mqtt, timeout=10) as link:
        link.publish(topic, command.to_json())     # returns once the broker confirmed it
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from coordinator.health.settings import FleetMqttSettings
from coordinator.remote.errors import SendError

logger = logging.getLogger(__name__)

_WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def broker_address(settings: FleetMqttSettings) -> tuple[str, int]:
    """Where the broker of ``[mqtt]`` listens, as a client on this machine reaches it."""
    if settings.host is not None:
        return settings.host, settings.port
    if settings.port == 0:
        raise SendError(
            "[mqtt] port: expected a fixed port to reach the running coordinator's embedded "
            "broker. Received: port=0 (it picks a free port at start, which this command "
            "cannot know)"
        )
    host = settings.embedded_host
    return _WILDCARD_HOSTS.get(host, host), settings.port


class CommandLink:
    """One connected paho client (its network thread runs until :meth:`close`)."""

    def __init__(self, client: mqtt.Client, host: str, port: int, timeout: float) -> None:
        self._client = client
        self.host, self.port = host, port
        self.timeout = timeout

    @classmethod
    def connect(cls, settings: FleetMqttSettings, *, timeout: float = 10.0) -> CommandLink:
        """Connect and wait for the broker's CONNACK; ``SendError`` says why it could not."""
        host, port = broker_address(settings)
        v5 = settings.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"orchard-config-{uuid.uuid4().hex[:12]}",
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else True,
        )
        client.connect_timeout = timeout
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        if settings.tls_ca is not None:
            try:
                client.tls_set(
                    ca_certs=settings.tls_ca, certfile=settings.tls_cert, keyfile=settings.tls_key
                )
            except (OSError, ValueError) as exc:
                raise SendError(f"[mqtt] TLS files unusable: {exc}") from exc
        answered = threading.Event()
        answer: list[Any] = []

        def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            answer.append(reason)
            answered.set()

        client.on_connect = on_connect
        where = f"the MQTT broker {host}:{port} ([mqtt] in coordinator.toml)"
        try:
            client.connect(host, port, keepalive=max(5, int(timeout) * 2))
        except (OSError, ValueError) as exc:
            raise SendError(
                f"cannot reach {where}: {exc}; is the coordinator (or Mosquitto) running?"
            ) from exc
        client.loop_start()
        link = cls(client, host, port, timeout)
        if not answered.wait(timeout):
            link.close()
            raise SendError(f"{where} did not answer the connection within {timeout:g} s")
        if answer[0].is_failure:
            link.close()
            raise SendError(f"{where} refused the connection: {answer[0]}")
        logger.debug("connected to %s:%d to publish commands", host, port)
        return link

    def publish(self, topic: str, payload: str) -> None:
        """Publish retained, QoS 1, and return once the broker confirmed it (PUBACK)."""
        try:
            info = self._client.publish(topic, payload, qos=1, retain=True)
            info.wait_for_publish(self.timeout)
        except (RuntimeError, ValueError) as exc:
            raise SendError(f"the broker {self.host}:{self.port} lost {topic}: {exc}") from exc
        if not info.is_published():
            raise SendError(
                f"the broker {self.host}:{self.port} did not confirm {topic} within "
                f"{self.timeout:g} s"
            )

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> CommandLink:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
