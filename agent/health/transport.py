"""The MQTT edge: a small ``Transport`` interface and its paho-mqtt 2.x implementation.

The reporter only sees ``Transport``; paho (its callbacks, reason codes, protocol quirks) stays
here. ``PahoTransport`` runs paho's network loop in its own thread (``loop_start``), reconnects
with backoff, sets the Last Will before every CONNECT (``Hooks.will``), and with
``protocol="auto"`` probes for MQTT 5 first (see ``clients.probe_v5``) and uses 3.1.1 when the
broker refuses v5, as amqtt does; a later v5 refusal also switches to 3.1.1 for good.

A connection that fails is explained once per distinct cause, at WARNING, in plain words
(``last_error``), e.g. ``TLS handshake with broker 127.0.0.1:8883 failed: certificate expired
(...)``. Paho swallows these errors (it retries and logs at debug), but it calls
``on_connect_fail`` and ``on_log`` from inside its ``except OSError`` blocks, so
``sys.exc_info()`` there is the real ``ssl.SSLError``. With TLS 1.3 the broker's verdict on
the client's certificate (an alert) arrives after the handshake, and may be lost when paho's
CONNECT meets the closed socket; the probe of ``protocol="auto"`` hides every cause. In both
cases ``tls_verdict`` asks again: one handshake that sends nothing and reads the alert.
"""

from __future__ import annotations

import logging
import socket
import ssl
import sys
import threading
from dataclasses import dataclass
from typing import Any, Final, Protocol

import paho.mqtt.client as mqtt

from agent.health.clients import TransportError, is_protocol_refusal, make_client, probe_v5
from agent.health.settings import BrokerSettings
from orchard_common import procs

logger = logging.getLogger(__name__)

QOS: Final = 1
DIAGNOSE_S: Final = 5.0
_X509_CERT_HAS_EXPIRED: Final = 10  # OpenSSL's X509_V_ERR_* codes
_X509_HOSTNAME_MISMATCH: Final = 62

# OpenSSL's names for the alerts a broker sends when it refuses our client certificate.
_ALERTS: Final = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "no client certificate (the broker requires one: is "
    "this device provisioned? set [mqtt] tls_cert and tls_key)",
    "TLSV1_ALERT_UNKNOWN_CA": "unknown CA (the broker does not trust this device's "
    "certificate: it was issued by another CA)",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "certificate expired (the broker refused this device's "
    "certificate as expired, or its CRL is out of date; re-provision the device with --reissue)",
    "SSLV3_ALERT_CERTIFICATE_REVOKED": "certificate revoked (the broker's CRL lists this "
    "device's certificate)",
    "SSLV3_ALERT_BAD_CERTIFICATE": "bad certificate (the broker refused this device's certificate)",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "handshake failure (the broker refused this device's "
    "certificate or TLS settings)",
    "TLSV1_ALERT_ACCESS_DENIED": "access denied (the broker refused this device's certificate)",
}


class TlsRefused(TransportError):
    """The TLS handshake with the broker failed; ``cause`` says why in plain words."""

    def __init__(self, host: str, port: int, cause: str) -> None:
        super().__init__(f"TLS handshake with broker {host}:{port} failed: {cause}")
        self.cause = cause


def describe_tls_error(exc: ssl.SSLError, tls_ca: str | None = None) -> str:
    """Plain words for what OpenSSL reported (``exc.reason`` is its short code)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code == _X509_CERT_HAS_EXPIRED:
            hint = (
                "the broker's own certificate expired: renew it (orchard-provision ca server-cert)"
            )
        elif exc.verify_code == _X509_HOSTNAME_MISMATCH:
            hint = "the broker's certificate does not name this host: reissue it with --host"
        else:
            hint = f"the broker's certificate is not signed by tls_ca {tls_ca}"
        return f"certificate verify failed: {exc.verify_message} ({hint})"
    reason = str(exc.reason or "")
    if reason in _ALERTS:
        return _ALERTS[reason]
    return reason.replace("_", " ").lower() or str(exc)


def tls_verdict(settings: BrokerSettings, timeout: float = DIAGNOSE_S) -> OSError | None:
    """Connect (and handshake, with TLS) and wait for the broker's verdict, sending nothing.

    Returns what refused us (``ssl.SSLError`` for TLS, ``OSError`` for the network), or None
    when the broker accepted and waits for a CONNECT. The TLS context is the one paho builds
    for ``tls_set``: verify the broker's certificate and host name, offer ours.
    """
    assert settings.host is not None
    try:
        with socket.create_connection((settings.host, settings.port), timeout=timeout) as raw:
            if settings.tls_ca is None:
                return None
            context = ssl.create_default_context(cafile=settings.tls_ca)
            if settings.tls_cert is not None:
                context.load_cert_chain(settings.tls_cert, settings.tls_key)
            with context.wrap_socket(raw, server_hostname=settings.host) as tls:
                tls.recv(1)  # TLS 1.3: the broker's alert comes after the handshake
    except TimeoutError:
        return None
    except OSError as exc:
        return exc
    except ValueError:  # unusable files: make_client already said so at construction
        return None
    return None


@dataclass(frozen=True)
class Will:
    topic: str
    payload: str


class Hooks(Protocol):
    """What the transport tells its owner; called from the network thread, must not block."""

    def will(self) -> Will: ...
    def connected(self, protocol: str) -> None: ...
    def disconnected(self) -> None: ...
    def message(self, topic: str, payload: bytes) -> None: ...


class Delivery:
    """One QoS 1 publish: ``wait`` returns True once the broker's PUBACK arrived."""

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self._done = threading.Event()
        self.lost = False  # the client that held it was replaced; publish it again

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)

    def _ack(self) -> None:
        self._done.set()


class Transport(Protocol):
    @property
    def connected(self) -> bool: ...
    @property
    def protocol(self) -> str | None: ...
    @property
    def last_error(self) -> str | None: ...
    def start(self, hooks: Hooks) -> None: ...
    def publish(self, topic: str, payload: str, *, retain: bool) -> Delivery: ...
    def subscribe(self, topic: str) -> None: ...
    def stop(self, last: Will | None = None, timeout: float = 5.0) -> None: ...


class PahoTransport:
    def __init__(
        self,
        settings: BrokerSettings,
        client_id: str,
        *,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 60.0,
    ) -> None:
        if settings.host is None:
            raise TransportError("mqtt.host: expected a broker host name. Received: host=None")
        self.settings = settings
        self.client_id = client_id
        self._backoff = (max(1, round(reconnect_min_s)), max(1, round(reconnect_max_s)))
        self._mode = settings.protocol
        self._protocol = "3.1.1" if self._mode == "3.1.1" else "5"
        make_client(settings, client_id, self._protocol)  # fail now on bad TLS files
        self._hooks: Hooks | None = None
        self._lock = threading.Lock()
        self._pending: dict[int, Delivery] = {}
        self._early: set[int] = set()
        self._generation = 0
        self._connected = False
        self._client: mqtt.Client | None = None
        self._closing = threading.Event()
        self._negotiator: threading.Thread | None = None
        self._last_error: str | None = None
        self._diagnosing = False

    # -- state ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def protocol(self) -> str | None:
        """The protocol of the current connection ("5" or "3.1.1"), None when disconnected."""
        return self._protocol if self._connected else None

    @property
    def last_error(self) -> str | None:
        """Why the last connection attempt failed, None once connected (for ``/healthz``)."""
        return self._last_error

    # -- why a connection failed ------------------------------------------------------------

    def _failed(self, exc: BaseException | None, *, definitive: bool = False) -> None:
        """Record (and log once per distinct cause) why a connection attempt failed.

        After a handshake, a reset or an EOF can hide the broker's alert (our CONNECT reached a
        socket it had closed, and the kernel dropped the alert on the RST): then ask the broker
        again without writing anything (``tls_verdict``) on a helper thread.
        """
        s = self.settings
        assert s.host is not None
        if not isinstance(exc, OSError):
            return
        hidden = isinstance(exc, ssl.SSLEOFError | ConnectionResetError | BrokenPipeError)
        if hidden and s.tls_ca is not None and not definitive:
            self._diagnose_soon()
            return
        if isinstance(exc, ssl.SSLError):
            message = str(TlsRefused(s.host, s.port, describe_tls_error(exc, s.tls_ca)))
        else:
            message = f"cannot reach broker {s.host}:{s.port}: {exc.strerror or exc}"
        if message != self._last_error:
            logger.warning("%s", message)
        self._last_error = message

    def _watch(self, client: mqtt.Client) -> None:
        """Hook paho's failure paths; both run inside paho's ``except OSError`` blocks."""

        def on_connect_fail(c: mqtt.Client, userdata: Any) -> None:
            self._failed(sys.exc_info()[1])

        def on_log(c: mqtt.Client, userdata: Any, level: int, buf: str) -> None:
            if level == mqtt.MQTT_LOG_ERR and not self._connected:
                self._failed(sys.exc_info()[1])

        client.on_connect_fail = on_connect_fail
        client.on_log = on_log

    def _diagnose_soon(self) -> None:
        with self._lock:
            if self._diagnosing or self._closing.is_set():
                return
            self._diagnosing = True
        threading.Thread(target=self._diagnose, name="mqtt-diagnose", daemon=True).start()

    def _diagnose(self) -> None:
        try:
            exc = tls_verdict(self.settings)
            if exc is not None and not self._connected:
                self._failed(exc, definitive=True)
        finally:
            with self._lock:
                self._diagnosing = False

    # -- setup ------------------------------------------------------------------------------

    def start(self, hooks: Hooks) -> None:
        """Connect in the background (never blocks on the broker)."""
        self._hooks = hooks
        if self._mode == "auto":
            self._negotiator = threading.Thread(
                target=self._negotiate, name="mqtt-negotiate", daemon=True
            )
            self._negotiator.start()
        else:
            self._launch()

    def _negotiate(self) -> None:
        """Probe for MQTT 5 until the broker answers, then start the real client."""
        backoff = procs.Backoff(*self._backoff)
        while not self._closing.is_set():
            answer = probe_v5(self.settings, self.client_id)
            if answer is None and not self._closing.is_set():
                self._diagnose()  # the probe hides why; ask once more, on this thread
            if answer is not None:
                self._protocol = "5" if answer else "3.1.1"
                logger.info("broker %s speaks MQTT %s", self.settings.host, self._protocol)
                self._launch()
                return
            self._closing.wait(backoff.next())

    def _launch(self) -> None:
        s = self.settings
        assert s.host is not None
        client = make_client(s, self.client_id, self._protocol)
        client.reconnect_delay_set(*self._backoff)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._watch(client)
        with self._lock:
            if self._closing.is_set():
                return
            self._client = client
        client.connect_async(s.host, s.port, keepalive=s.keepalive_s)
        client.loop_start()

    def _fall_back(self, client: mqtt.Client) -> None:
        """Replace the v5 client by a 3.1.1 one (runs on its own short-lived thread)."""
        client.loop_stop()
        with self._lock:
            if client is not self._client:
                return
            self._protocol = "3.1.1"
            self._generation += 1
            for delivery in self._pending.values():
                delivery.lost = True
            self._pending.clear()
            self._early.clear()
        logger.info("broker refused MQTT 5; using MQTT 3.1.1")
        self._launch()

    # -- paho callbacks (network thread) ----------------------------------------------------

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        if self._hooks is not None:
            will = self._hooks.will()
            client.will_set(will.topic, will.payload, qos=QOS, retain=True)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            if is_protocol_refusal(reason) and self._mode == "auto" and self._protocol == "5":
                threading.Thread(target=self._fall_back, args=(client,), daemon=True).start()
                return
            logger.warning("broker %s refused the connection: %s", self.settings.host, reason)
            self._last_error = f"broker {self.settings.host} refused the connection: {reason}"
            return
        self._connected = True
        self._last_error = None
        logger.info(
            "connected to %s:%s (MQTT %s)", self.settings.host, self.settings.port, self._protocol
        )
        if self._hooks is not None:
            self._hooks.connected(self._protocol)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        was = self._connected
        self._connected = False
        if was:
            logger.info("disconnected from %s: %s", self.settings.host, reason)
            if self._hooks is not None:
                self._hooks.disconnected()

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any
    ) -> None:
        with self._lock:
            delivery = self._pending.pop(mid, None)
            if delivery is None:
                self._early.add(mid)
        if delivery is not None:
            delivery._ack()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._hooks is not None:
            self._hooks.message(msg.topic, bytes(msg.payload))

    # -- use --------------------------------------------------------------------------------

    def publish(self, topic: str, payload: str, *, retain: bool) -> Delivery:
        """Hand one QoS 1 message to paho, which resends it after a reconnect until acked."""
        with self._lock:
            client, delivery = self._client, Delivery(self._generation)
        if client is None:
            delivery.lost = True
            return delivery
        info = client.publish(topic, payload, qos=QOS, retain=retain)
        with self._lock:
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE or client is not self._client:
                delivery.lost = True
            elif info.mid in self._early:
                self._early.discard(info.mid)
                delivery._ack()
            else:
                self._pending[info.mid] = delivery
        return delivery

    def subscribe(self, topic: str) -> None:
        if self._client is not None:
            self._client.subscribe(topic, qos=QOS)

    def stop(self, last: Will | None = None, timeout: float = 5.0) -> None:
        """Publish ``last`` (retained) if connected, then disconnect cleanly (no Last Will)."""
        if last is not None and self._connected:
            delivery = self.publish(last.topic, last.payload, retain=True)
            if not delivery.wait(timeout):
                logger.warning("no PUBACK for the final status within %.1f s", timeout)
        with self._lock:
            self._closing.set()
            client = self._client
        if self._negotiator is not None:
            self._negotiator.join(timeout)
        if client is not None:
            client.disconnect()
            client.loop_stop()
        self._connected = False
