"""The embedded broker and the shared broker fixtures: publish/subscribe, retain, restart."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from coordinator.broker import EmbeddedBroker, accepts_tcp
from coordinator.errors import BrokerError
from tests.brokers import Broker
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


def _client(broker: Broker, protocol: MQTTProtocolVersion) -> tuple[mqtt.Client, list[str]]:
    events: list[str] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
    client.on_connect = lambda _c, _u, _f, rc, _p: events.append(f"connect:{rc}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client, events


def test_retained_message_reaches_a_late_subscriber(broker: Broker) -> None:
    pub, _ = _client(broker, MQTTProtocolVersion.MQTTv311)
    pub.publish(
        "orchard/v1/pi-1/status", b'{"state":"ready"}', qos=1, retain=True
    ).wait_for_publish(5)
    got: list[tuple[str, bytes, bool]] = []
    done = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        got.append((msg.topic, msg.payload, msg.retain))
        done.set()

    sub, _ = _client(broker, MQTTProtocolVersion.MQTTv311)
    sub.on_message = on_message
    sub.subscribe("orchard/v1/+/status", qos=1)
    assert done.wait(10)
    assert got == [("orchard/v1/pi-1/status", b'{"state":"ready"}', True)]
    for c in (pub, sub):
        c.loop_stop()
        c.disconnect()


def test_restart_keeps_the_port_and_clients_reconnect(broker: Broker) -> None:
    client, events = _client(broker, MQTTProtocolVersion.MQTTv311)
    wait_until(lambda: len(events) == 1)
    port = broker.port
    broker.restart()
    assert broker.port == port
    wait_until(lambda: len(events) == 2)  # paho's loop reconnected to the same address
    assert events == ["connect:Success", "connect:Success"]
    client.loop_stop()
    client.disconnect()


def test_embedded_broker_refuses_mqtt5(embedded_broker: Broker) -> None:
    client, events = _client(embedded_broker, MQTTProtocolVersion.MQTTv5)
    wait_until(lambda: events)
    assert events == ["connect:Unsupported protocol version"]
    client.loop_stop()


def test_embedded_broker_start_stop_and_bad_port() -> None:
    broker = EmbeddedBroker()
    with pytest.raises(BrokerError, match="no port yet"):
        _ = broker.port
    with broker:
        assert accepts_tcp("127.0.0.1", broker.port)
        port = broker.port
    assert not accepts_tcp("127.0.0.1", port)
    with pytest.raises(BrokerError, match="Received: port=70000"):
        EmbeddedBroker(port=70000)


def test_embedded_broker_reports_a_taken_port(embedded_broker: Broker) -> None:
    with pytest.raises(BrokerError, match="could not start"):
        EmbeddedBroker(port=embedded_broker.port).start()
