"""The MQTT ingest against both real brokers: Mosquitto and the embedded amqtt broker."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.health.ingest import HealthIngest
from coordinator.health.metrics import HealthMetrics
from coordinator.health.registry import Registry
from coordinator.health.settings import FleetMqttSettings
from tests.brokers import Broker
from tests.waiting import wait_until

from .helpers import Publisher, birth, health, status

pytestmark = pytest.mark.slow


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "fleet.sqlite")
    yield reg
    reg.close()


def start_ingest(broker: Broker, registry: Registry, **kw: object) -> HealthIngest:
    ingest = HealthIngest(FleetMqttSettings(**kw), broker.host, broker.port, registry)  # type: ignore[arg-type]
    ingest.start()
    assert ingest.wait_subscribed(10), "ingest did not subscribe"
    return ingest


@pytest.fixture
def publisher(broker: Broker) -> Iterator[Publisher]:
    pub = Publisher(broker.host, broker.port)
    yield pub
    pub.close()


def test_devices_reach_the_registry(
    broker: Broker, registry: Registry, publisher: Publisher
) -> None:
    ingest = start_ingest(broker, registry)
    # amqtt refuses MQTT 5, so "auto" falls back there; Mosquitto speaks 5.
    assert ingest.protocol == ("3.1.1" if broker.kind == "embedded" else "5")
    for i, name in enumerate(("pi-1", "pi-2", "pi-3")):
        fleet = "barn" if name == "pi-3" else None
        publisher.send(name, status("ready"), fleet=fleet, retain=True)
        publisher.send(name, birth(name, interval_s=5), fleet=fleet, retain=True)
        publisher.send(name, health(node_id=100 + i, temp=40.0 + i), fleet=fleet)
    wait_until(lambda: len(registry.history("pi-3")) == 1, what="pi-3's health")
    wait_until(lambda: all(len(registry.history(f"pi-{i}")) == 1 for i in (1, 2)), what="health")
    recs = {r.device_id: r for r in registry.devices()}
    assert sorted(recs) == ["pi-1", "pi-2", "pi-3"]
    assert recs["pi-3"].fleet == "barn" and recs["pi-2"].cpu_temp_c == 41.0
    assert all(r.state == "ready" and r.interval_s == 5.0 for r in recs.values())
    assert registry.device_for_node(101).device_id == "pi-2"  # type: ignore[union-attr]
    m = ingest.metrics
    assert (m.count("ingested", "status"), m.count("ingested", "health")) == (3.0, 3.0)
    assert m.count("invalid", "health") == 0.0
    ingest.stop()


def test_invalid_messages_are_counted_and_the_ingest_carries_on(
    broker: Broker, registry: Registry, publisher: Publisher
) -> None:
    metrics = HealthMetrics()
    ingest = HealthIngest(FleetMqttSettings(), broker.host, broker.port, registry, metrics)
    ingest.start()
    assert ingest.wait_subscribed(10)
    good = json.loads(health().to_json())
    bad = [
        ("orchard/v1/pi-1/health", b"{not json"),
        ("orchard/v1/pi-1/health", b"\xff\xfe"),
        ("orchard/v1/pi-1/health", json.dumps({**good, "cpu_pct": 150}).encode()),
        ("orchard/v1/pi-1/health", json.dumps({**good, "readings": [21.5, 21.6]}).encode()),
        ("orchard/v1/pi-1/status", b'{"state": "exploded", "session": 1, "ts": 1}'),
        ("orchard/v1/pi-1/birth", birth("someone-else").to_json().encode()),
        ("orchard/v1/pi-1/weather", b"{}"),
        ("orchard/v1/bad~id/health", health().to_json().encode()),
    ]
    for topic, data in bad:
        publisher.raw(topic, data)
    publisher.send("pi-1", health(seq=7))
    wait_until(lambda: registry.history("pi-1"), what="the good message after the bad ones")
    assert metrics.count("invalid", "health") == 4.0
    assert metrics.count("invalid", "status") == 1.0
    assert metrics.count("invalid", "birth") == 1.0
    assert metrics.count("invalid", "topic") == 2.0
    assert metrics.count("ingested", "health") == 1.0
    rec = registry.device("pi-1")
    assert rec is not None and rec.health is not None and rec.health.seq == 7
    assert rec.birth is None and rec.status is None
    assert b"orchard_health_invalid_messages_total" in metrics.render()
    ingest.stop()


def test_ingest_resubscribes_after_the_broker_restarts(
    broker: Broker, registry: Registry, publisher: Publisher
) -> None:
    ingest = start_ingest(broker, registry)
    publisher.send("pi-1", health(seq=1))
    wait_until(lambda: len(registry.history("pi-1")) == 1, what="first message")
    broker.restart()
    wait_until(lambda: not ingest.subscribed, what="ingest to notice the broker went away")
    assert ingest.wait_subscribed(15), "ingest did not come back after the broker restarted"
    wait_until(publisher.client.is_connected, 15, what="publisher to reconnect")
    for seq in (2, 3, 4):
        publisher.send("pi-1", health(seq=seq))
    wait_until(lambda: len(registry.history("pi-1")) == 4, what="messages after the restart")
    rec = registry.device("pi-1")
    assert rec is not None and rec.health is not None and rec.health.seq == 4
    assert ingest.metrics.connected._value.get() == 1.0
    ingest.stop()


def test_retained_state_is_picked_up_when_the_ingest_starts(
    broker: Broker, registry: Registry, publisher: Publisher
) -> None:
    sent = status("ready", session=3)
    publisher.send("pi-9", sent, retain=True)
    publisher.send("pi-9", birth("pi-9"), retain=True)
    ingest = start_ingest(broker, registry, fleet=None)
    rec = wait_until(
        lambda: (r := registry.device("pi-9")) and r.birth and r, what="retained state"
    )
    assert rec.status == "ready" and rec.session == 3 and rec.last_seen == pytest.approx(sent.ts)
    ingest.stop()


_DYING_AGENT = """
import sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv311)
c.will_set(sys.argv[3], sys.argv[4], qos=1, retain=True)
c.connect(sys.argv[1], int(sys.argv[2]), keepalive=30)
c.loop_start()
c.publish(sys.argv[3], sys.argv[5], qos=1, retain=True).wait_for_publish(10)
print("up", flush=True)
time.sleep(60)
"""


def test_a_killed_device_becomes_lost_through_its_last_will(
    broker: Broker, registry: Registry
) -> None:
    ingest = start_ingest(broker, registry)
    topic = "orchard/v1/pi-7/status"
    lost, ready = status("lost", session=2).to_json(), status("ready", session=2).to_json()
    proc = subprocess.Popen(
        [sys.executable, "-c", _DYING_AGENT, broker.host, str(broker.port), topic, lost, ready],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"up"
        wait_until(lambda: (r := registry.device("pi-7")) and r.state == "ready", what="ready")
        proc.send_signal(signal.SIGKILL)
        wait_until(lambda: registry.device("pi-7").state == "lost", what="the Last Will")  # type: ignore[union-attr]
    finally:
        proc.kill()
        proc.wait(10)
    ingest.stop()


def test_a_named_ingest_gets_what_was_sent_while_it_was_down(
    mosquitto_broker: Broker, registry: Registry
) -> None:
    # Mosquitto only: the embedded broker lives in the coordinator's process, so it restarts
    # with it (and amqtt drops anonymous sessions on disconnect anyway).
    broker = mosquitto_broker
    publisher = Publisher(broker.host, broker.port)
    ingest = start_ingest(broker, registry, client_id="orchard-coordinator-test")
    publisher.send("pi-1", health(seq=1))
    wait_until(lambda: len(registry.history("pi-1")) == 1, what="first message")
    ingest.stop()
    for seq in (2, 3):
        publisher.send("pi-1", health(seq=seq))  # the broker queues them for the named session
    again = start_ingest(broker, registry, client_id="orchard-coordinator-test")
    wait_until(lambda: len(registry.history("pi-1")) == 3, what="messages queued by the broker")
    again.stop()
    publisher.close()


def test_a_broker_that_stalls_on_mqtt5_gets_311_after_a_timeout(
    embedded_broker: Broker, registry: Registry
) -> None:
    # A named ingest sends a v5 session-expiry property; amqtt waits for more bytes instead of
    # refusing it, so only the CONNACK timeout (3 s) gets the ingest to fall back.
    ingest = HealthIngest(
        FleetMqttSettings(client_id="orchard-coordinator-test"),
        embedded_broker.host,
        embedded_broker.port,
        registry,
    )
    ingest.start()
    assert ingest.wait_subscribed(10) and ingest.protocol == "3.1.1"
    ingest.stop()
