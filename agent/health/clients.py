"""paho-mqtt client construction (auth, TLS) and MQTT 5 negotiation.

``protocol = "auto"`` needs to know whether the broker speaks MQTT 5 *before* the real
connection, because a refusing broker may never answer a v5 CONNECT that carries a Last Will
(amqtt tries to parse its will properties as 3.1.1 and waits for bytes that never come). So
``probe_v5`` connects once without a will under a separate client id and reads the CONNACK:
success or any refusal other than "unsupported protocol version" means v5.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.errors import AgentError
from agent.health.settings import BrokerSettings

logger = logging.getLogger(__name__)

PROTOCOLS: Final = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}
UNSUPPORTED_PROTOCOL: Final = (1, 132)  # 3.1.1 CONNACK rc 1 / v5 reason 0x84


class TransportError(AgentError):
    """The MQTT client could not be set up (TLS files, bad settings)."""


def make_client(settings: BrokerSettings, client_id: str, protocol: str) -> mqtt.Client:
    version = PROTOCOLS[protocol]
    kwargs: dict[str, Any] = {"clean_session": True} if version == mqtt.MQTTv311 else {}
    api = CallbackAPIVersion.VERSION2
    client = mqtt.Client(api, client_id=client_id, protocol=version, **kwargs)
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls_ca is not None:
        try:
            client.tls_set(
                ca_certs=settings.tls_ca, certfile=settings.tls_cert, keyfile=settings.tls_key
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise TransportError(f"mqtt TLS setup failed ({settings.tls_ca}): {exc}") from exc
    return client


def is_protocol_refusal(reason: Any) -> bool:
    return getattr(reason, "value", reason) in UNSUPPORTED_PROTOCOL


def probe_v5(settings: BrokerSettings, client_id: str, timeout: float = 5.0) -> bool | None:
    """True if the broker accepts MQTT 5, False if it refuses it, None if it did not answer."""
    assert settings.host is not None
    client = make_client(settings, f"{client_id}-probe", "5")
    answer: list[Any] = []
    done = threading.Event()

    def on_connect(c: mqtt.Client, u: Any, flags: Any, reason: Any, props: Any) -> None:
        answer.append(reason)
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = lambda *args: done.set()
    try:
        client.connect(settings.host, settings.port, keepalive=max(5, settings.keepalive_s))
    except (OSError, ssl.SSLError) as exc:
        logger.debug("MQTT 5 probe of %s:%s failed: %s", settings.host, settings.port, exc)
        return None
    deadline = time.monotonic() + timeout
    try:
        while not done.is_set() and time.monotonic() < deadline:
            client.loop(timeout=0.05)
    finally:
        client.disconnect()
    if not answer:
        return None
    return not is_protocol_refusal(answer[0])
