"""MQTT driver against a real Mosquitto broker (see the ``mosquitto`` fixture)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.errors import ConfigError, SensorError
from agent.sensors.mqtt import MqttDriver
from tests.waiting import wait_until

from .conftest import Broker, FakeClock, free_port
from .mqtt_proxy import RefuseV5Proxy


@pytest.fixture
def publisher(mosquitto: Broker) -> Iterator[mqtt.Client]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv311)
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    yield client
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def topic() -> str:
    return f"tele/sonoff-{uuid.uuid4().hex[:8]}/SENSOR"


def publish(client: mqtt.Client, topic: str, body: Any) -> None:
    text = body if isinstance(body, str) else json.dumps(body)
    client.publish(topic, text, qos=1).wait_for_publish(timeout=5)


def make(broker_port: int, topic: str, clock: FakeClock, **options: Any) -> MqttDriver:
    options = {
        "topics": topic,
        "port": broker_port,
        "fields": {"temp_c": "AM2301.Temperature", "humidity_pct": "AM2301.Humidity"},
        **options,
    }
    return MqttDriver.from_config("tasmota", options, clock=clock)


def started(driver: MqttDriver) -> MqttDriver:
    assert driver.read() == []  # first read connects
    wait_until(lambda: driver.ready)
    return driver


def test_latest_values_since_last_read(
    mosquitto: Broker, publisher: mqtt.Client, topic: str, clock: FakeClock
) -> None:
    driver = started(make(mosquitto.port, topic, clock))
    try:
        assert driver.protocol == MQTTProtocolVersion.MQTTv5
        publish(
            publisher,
            topic,
            {"Time": "2024-01-01T00:00:00", "AM2301": {"Temperature": 21.3, "Humidity": 40}},
        )
        publish(publisher, topic, "{not json")
        publish(publisher, topic, {"DS18B20": {"Temperature": 19.0}})
        clock.advance(5)
        publish(publisher, topic, {"AM2301": {"Temperature": "22.5"}})
        publish(publisher, topic, {"AM2301": {"Temperature": "hot"}})
        wait_until(lambda: sum(driver.rejected().values()) == 3)
        assert driver.rejected() == {"bad_json": 1, "missing_path": 1, "not_a_number": 1}
        [reading] = driver.read()
        assert reading.values == {"temp_c": 22.5, "humidity_pct": 40.0}
        assert reading.ts == clock.now and reading.sensor == "tasmota"
        assert driver.read() == []
    finally:
        driver.close()


def test_label_path_and_wildcards(
    mosquitto: Broker, publisher: mqtt.Client, clock: FakeClock
) -> None:
    base = f"zigbee2mqtt-{uuid.uuid4().hex[:8]}"
    driver = make(
        mosquitto.port,
        f"{base}/+",
        clock,
        protocol="3.1.1",
        label="occupancy",
        fields={"lux": "illuminance", "first": "values.0"},
    )
    started(driver)
    try:
        publish(publisher, f"{base}/hall", {"illuminance": 120, "occupancy": True, "values": [3]})
        [reading] = wait_until(driver.read)
        assert reading.values == {"lux": 120.0, "first": 3.0} and reading.label == "True"
    finally:
        driver.close()


@pytest.mark.parametrize("close_only", [False, True], ids=["connack-refusal", "closed-socket"])
def test_falls_back_to_311_when_the_broker_refuses_v5(
    mosquitto: Broker, publisher: mqtt.Client, topic: str, clock: FakeClock, close_only: bool
) -> None:
    proxy = RefuseV5Proxy(mosquitto.port, close_only=close_only)
    driver = make(proxy.port, topic, clock)
    try:
        started(driver)
        assert driver.protocol == MQTTProtocolVersion.MQTTv311
        assert proxy.levels[:2] == [5, 4]
        publish(publisher, topic, {"AM2301": {"Temperature": 20.0, "Humidity": 50}})
        [reading] = wait_until(driver.read)
        assert reading.values["temp_c"] == 20.0
    finally:
        driver.close()
        proxy.close()


def test_unreachable_broker_is_a_sensor_error(clock: FakeClock) -> None:
    driver = make(free_port(), "t", clock)

    def error() -> SensorError | None:
        try:
            driver.read()
        except SensorError as exc:
            return exc
        return None

    try:
        assert "cannot connect to broker" in str(wait_until(error, timeout=10))
    finally:
        driver.close()


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"topics": []}, "sensors.tasmota.topics"),
        ({"fields": {}}, "sensors.tasmota.fields"),
        ({"protocol": "4"}, "sensors.tasmota.protocol"),
        ({"port": 70000}, "sensors.tasmota.port"),
        ({"qos": 3}, "sensors.tasmota.qos"),
    ],
)
def test_bad_options(clock: FakeClock, options: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        make(1883, "t", clock, **options)
    assert info.value.key == key
