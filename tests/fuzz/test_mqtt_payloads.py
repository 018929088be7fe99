"""Hypothesis on the MQTT sensor driver's payload handling (agent/sensors/mqtt.py).

Whatever bytes arrive on a subscribed topic, the paho callback never raises, and each message
either contributes values to the next reading or is counted under exactly one documented reason
(``bad_json``, ``missing_path``, ``not_a_number``); never ``error``, the reason kept for bugs.
A number placed at any field path (dict keys and list indexes, negative ones too) is found.

Most examples drive the paho callback of a driver that never connects (closed first, so
``read()`` only drains); one test sends a seeded corpus through a real Mosquitto.
"""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.sensors.mqtt import MqttDriver
from tests.brokers import Broker
from tests.fakes import FakeClock
from tests.fuzz.conftest import fuzz
from tests.waiting import wait_until

REASONS = {"bad_json", "missing_path", "not_a_number"}
FIELDS = {"temp_c": "AM2301.Temperature", "hum": "sensors.1.value", "whole": ""}


def offline(fields: dict[str, str], **options: Any) -> MqttDriver:
    """A driver whose ``read()`` only drains what the callback took (closed: never connects)."""
    driver = MqttDriver.from_config(
        "fuzz", {"topics": "t/#", "fields": fields, **options}, clock=FakeClock()
    )
    driver.close()
    return driver


def deliver(driver: MqttDriver, body: bytes, topic: bytes = b"t/x") -> None:
    msg = mqtt.MQTTMessage(topic=topic)
    msg.payload = body
    driver._on_message(None, None, msg)  # type: ignore[arg-type]  # paho's callback, as paho calls it


def outcome(driver: MqttDriver, body: bytes) -> str:
    """Deliver ``body``; return ``"reading"`` or the one reason it was counted under."""
    before = dict(driver.rejected())
    deliver(driver, body)
    after = dict(driver.rejected())
    grown = {r: after[r] - before.get(r, 0) for r in after if after[r] != before.get(r, 0)}
    readings = driver.read()
    if readings:
        assert grown == {}, grown
        assert len(readings) == 1 and readings[0].values
        return "reading"
    assert len(grown) == 1 and next(iter(grown.values())) == 1, grown
    (reason,) = grown
    assert reason in REASONS, f"{reason!r} for {body[:120]!r}"
    return reason


json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),  # beyond float range
    st.floats(),
    st.text(max_size=10),
    st.sampled_from(["21.5", " 1e3 ", "1e999", "-inf", "NaN", "0x10", "٣", "²"]),
)
json_docs = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["AM2301", "Temperature", "sensors", "value", "x"]), inner
        )
    ),
    max_leaves=12,
)


@fuzz(300)
@given(body=st.binary(max_size=200))
def test_arbitrary_bytes_are_a_reading_or_one_documented_rejection(body: bytes) -> None:
    event(outcome(offline(FIELDS), body))


@fuzz(300)
@given(doc=json_docs)
def test_arbitrary_json_is_a_reading_or_one_documented_rejection(doc: Any) -> None:
    body = json.dumps(doc).encode()  # NaN and Infinity as Python writes them
    event(outcome(offline(FIELDS), body))


@fuzz(60)
@given(depth=st.integers(1, 200_000), opener=st.sampled_from([b"[", b'{"a":']))
def test_deep_nesting_is_bad_json_not_a_crash(depth: int, opener: bytes) -> None:
    body = opener * depth
    assert outcome(offline(FIELDS), body) == "bad_json"


# -- field paths ------------------------------------------------------------------------------

keys = st.text(st.characters(blacklist_characters="."), min_size=1, max_size=6)
steps = st.lists(
    st.one_of(
        keys.map(lambda k: ("key", k)),
        st.tuples(st.just("index"), st.integers(-4, 4), st.integers(0, 4)),
    ),
    max_size=5,
)
numbers = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(-1e6, 1e6).map(repr),  # numeric strings, as Tasmota and friends send
)


def place(value: Any, path: list[Any], rng: random.Random) -> tuple[Any, str]:
    """A document holding ``value`` at ``path`` among decoys, and the dotted path to it."""
    node: Any = value
    parts: list[str] = []
    for step in reversed(path):
        if step[0] == "key":
            node = {"decoy": rng.random(), step[1]: node}
            parts.append(step[1])
        else:
            _, index, extra = step
            size = max(index + 1, -index) + extra
            items: list[Any] = [{"decoy": i} for i in range(size)]
            items[index] = node
            node = items
            parts.append(str(index))
    return node, ".".join(reversed(parts))


@fuzz(300)
@given(path=steps, value=numbers, seed=st.integers(0, 2**16))
def test_a_number_at_any_field_path_is_found(path: list[Any], value: Any, seed: int) -> None:
    document, dotted = place(value, path, random.Random(seed))
    driver = offline({"f": dotted})
    deliver(driver, json.dumps(document).encode())
    [reading] = driver.read()
    assert reading.values == {"f": float(value)}
    assert driver.rejected() == {}


@fuzz(200)
@given(path=steps, seed=st.integers(0, 2**16), junk=json_docs)
def test_a_path_that_misses_is_counted_as_missing(path: list[Any], seed: int, junk: Any) -> None:
    document, dotted = place(1.0, path, random.Random(seed))
    driver = offline({"f": f"{dotted}.nowhere" if dotted else "nowhere"})
    deliver(driver, json.dumps(document).encode())
    assert driver.read() == []
    assert driver.rejected() == {"missing_path": 1}


odd_parts = st.one_of(
    keys,
    st.sampled_from(["0", "-1", "-0", "²", "٣", "1_0", "9" * 5000, "AM2301", "sensors", "value"]),
)


@fuzz(300)
@given(parts=st.lists(odd_parts, min_size=1, max_size=4), doc=json_docs)
def test_any_configured_path_on_any_document_never_errors(parts: list[str], doc: Any) -> None:
    driver = offline({"f": ".".join(parts)}, label=".".join(reversed(parts)))
    event(outcome(driver, json.dumps(doc).encode()))


# -- through a real broker ------------------------------------------------------------------


def corpus(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    fixed = [
        b"",
        b"\xff\xfe\x00",
        b"{not json",
        b"[" * 100_000,
        b'{"AM2301": {"Temperature": ' + b"9" * 400 + b"}}",
        b'{"AM2301": {"Temperature": "' + b"9" * 5000 + b'"}}',
        b'{"AM2301": {"Temperature": ' + b"9" * 5000 + b"}}",  # beyond int() digit limit
        b'{"sensors": {"1": {"value": 3}}}',  # "1" as a dict key also matches
        '{"AM2301": {"Temperature": "٣"}}'.encode(),
        json.dumps({"sensors": [0, {"value": True}]}).encode(),
        "\ufeff{}".encode(),
    ]
    return fixed + [rng.randbytes(rng.randint(1, 300)) for _ in range(40)]


@pytest.mark.slow
def test_a_seeded_corpus_through_mosquitto(mosquitto: Broker) -> None:
    """Over the wire the driver counts exactly what its callback counts offline, and the paho
    thread survives the corpus: a good message sent last still becomes a reading."""
    good = json.dumps({"AM2301": {"Temperature": 21.5}, "sensors": [0, {"value": "40"}]})
    bodies = [*corpus(seed=7), good.encode()]
    reference = offline(FIELDS)
    for body in bodies:
        deliver(reference, body)
    expected = reference.rejected()
    assert set(expected) <= REASONS and sum(expected.values()) > len(bodies) // 2
    [merged] = reference.read()

    topic = f"fuzz/{uuid.uuid4().hex[:8]}/SENSOR"
    driver = MqttDriver.from_config(
        "fuzz", {"topics": topic, "port": mosquitto.port, "fields": FIELDS}, clock=FakeClock()
    )
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv311)
    pub.connect(mosquitto.host, mosquitto.port)
    pub.loop_start()
    try:
        assert driver.read() == []  # connects and subscribes
        wait_until(lambda: driver.ready, 10, "the driver to subscribe")
        for body in bodies:
            pub.publish(topic, body, qos=1).wait_for_publish(timeout=5)
        total = sum(expected.values())
        wait_until(lambda: sum(driver.rejected().values()) >= total, 10, "the corpus to be counted")
        # read() hands over what arrived so far: the corpus's accepted messages may come in a
        # read of their own before the good one (sent last, QoS 1, so it arrives last)
        readings: list[Any] = []

        def the_good_one_arrived() -> bool:
            readings.extend(driver.read())
            return bool(readings) and readings[-1].values == merged.values

        wait_until(the_good_one_arrived, 10, "the good message's reading")
        assert driver.rejected() == expected
        assert readings[-1].values == merged.values
        assert readings[-1].values["temp_c"] == 21.5 and readings[-1].values["hum"] == 40.0
    finally:
        pub.disconnect()
        pub.loop_stop()
        driver.close()
