"""Hypothesis on the coordinator's MQTT health ingest (coordinator/health/ingest.py).

With a real SQLite registry and a real Mosquitto, every message is accounted for: stored and
counted as ingested, or refused and counted as invalid by kind, never as an ``error`` (a bug).
A bad message costs only itself, never the good ones that arrived in the same batch; that
includes a valid message SQLite cannot hold (an integer beyond its signed 64 bits).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.health.schema import PAYLOADS
from coordinator.health.ingest import HealthIngest
from coordinator.health.metrics import HealthMetrics
from coordinator.health.registry import Registry
from coordinator.health.settings import FleetMqttSettings
from tests.brokers import Broker
from tests.fuzz.conftest import fuzz
from tests.fuzz.health_payloads import KINDS, documents, json_values
from tests.waiting import wait_until


class Ingest:
    def __init__(self, broker: Broker, root: Path) -> None:
        self.prefix = f"fuzz-{uuid.uuid4().hex[:8]}/v1"
        self.registry = Registry(root / "fleet.sqlite")
        self.metrics = HealthMetrics()
        settings = FleetMqttSettings(topic_prefix=self.prefix)
        self.ingest = HealthIngest(settings, broker.host, broker.port, self.registry, self.metrics)
        self.ingest.start()
        assert self.ingest.wait_subscribed(10), "ingest did not subscribe"

    def deliver(self, topic: str, data: bytes) -> None:
        """Hand a message to the ingest as paho's network thread does."""
        msg = mqtt.MQTTMessage(topic=topic.encode())
        msg.payload = data
        self.ingest._on_message(None, None, msg)  # type: ignore[arg-type]

    def counts(self) -> dict[tuple[str, str], float]:
        kinds = (*KINDS, "topic", "store", "error")
        return {
            (name, kind): self.metrics.count(name, kind)
            for name in ("ingested", "invalid")
            for kind in kinds
        }

    def stored(self, kind: str, device_id: str) -> bool:
        record = self.registry.device(device_id)
        if record is None:
            return False
        if kind == "status":
            return record.status is not None
        if kind == "birth":
            return record.birth_doc is not None
        if kind == "health":
            return bool(self.registry.history(device_id))
        if kind == "ack":
            return bool(self.registry.acks(device_id))
        return bool(self.registry.events(device_id))

    def close(self) -> None:
        self.ingest.stop()
        self.registry.close()


@pytest.fixture(scope="module")
def ingest(mosquitto: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingest]:
    it = Ingest(mosquitto, tmp_path_factory.mktemp("ingest"))
    yield it
    it.close()


garbage = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from(
        [
            b"[" * 60_000,
            b'{"seq": ' + b"9" * 400 + b"}",
            json.dumps({"state": "ready", "session": 1, "ts": 1.0}).encode("utf-16"),
        ]
    ),
)
bad_topics = st.sampled_from(["{p}/pi/nope", "{p}/a/b/c/health", "{p}/+/health", "{p}//health"])


@pytest.mark.slow
@fuzz(40)
@given(
    good=st.lists(documents, min_size=1, max_size=6),
    bad=st.lists(st.tuples(st.sampled_from(KINDS), garbage), max_size=6),
    bad_topic=st.lists(st.tuples(bad_topics, st.binary(max_size=20)), max_size=2),
    order=st.randoms(use_true_random=False),
)
def test_every_message_is_stored_or_counted_and_bad_ones_cost_only_themselves(
    ingest: Ingest,
    good: list[tuple[str, dict[str, Any]]],
    bad: list[tuple[str, bytes]],
    bad_topic: list[tuple[str, bytes]],
    order: random.Random,
) -> None:
    before = ingest.counts()
    messages: list[tuple[str, str | None, str, bytes]] = []  # kind, device, topic, payload
    for kind, data in good:
        device = f"ok-{uuid.uuid4().hex[:10]}"
        if kind == "birth":
            data = {**data, "device_id": device}
        body = PAYLOADS[kind].validate(data).to_json().encode()
        messages.append((kind, device, f"{ingest.prefix}/{device}/{kind}", body))
    for kind, body in bad:
        device = f"bad-{uuid.uuid4().hex[:10]}"
        messages.append((f"bad-{kind}", device, f"{ingest.prefix}/{device}/{kind}", body))
    for topic, body in bad_topic:
        messages.append(("bad-topic", None, topic.format(p=ingest.prefix), body))
    order.shuffle(messages)
    for _, _, topic, body in messages:  # queued back to back: the writer batches them
        ingest.deliver(topic, body)
    wait_until(ingest.ingest.drained, 10, "the ingest to drain its queue")

    after = ingest.counts()
    delta = {k: after[k] - before[k] for k in after}
    assert delta[("invalid", "error")] == 0, "a message broke validation"
    # every message is counted exactly once (an empty payload only clears a retained one)
    cleared = sum(1 for k, d, _, body in messages if d and not body)
    assert sum(delta.values()) == len(messages) - cleared, delta
    # every valid message is stored, unless SQLite cannot hold one of its integers (counted)
    valid = [(k, d) for k, d, _, _ in messages if not k.startswith("bad") and d]
    kept = sum(ingest.stored(k, d) for k, d in valid)
    assert kept + delta[("invalid", "store")] == len(valid), delta
    assert sum(delta[("ingested", k)] for k in KINDS) >= kept
    event(f"batch of {len(messages)}")


@pytest.mark.slow
def test_a_poisoned_burst_through_mosquitto_keeps_the_good_messages(
    mosquitto: Broker, tmp_path: Path
) -> None:
    """Through the real broker: each poison kind next to a good message, in one burst."""
    it = Ingest(mosquitto, tmp_path)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv311)
    pub.connect(mosquitto.host, mosquitto.port)
    pub.loop_start()
    status = {"state": "ready", "session": 1, "ts": 1.0}
    poison = {
        "deep": b"[" * 60_000,
        "huge-int": b'{"state": "ready", "session": 1, "ts": 1' + b"0" * 400 + b"}",
        "utf-16": json.dumps(status).encode("utf-16"),
        "beyond-sqlite": json.dumps({**status, "session": 2**63}).encode(),
        "bytes": bytes(range(256)),
    }
    try:
        published = []
        for name, body in poison.items():
            for device, data in ((f"good-{name}", json.dumps(status).encode()), (name, body)):
                topic = f"{it.prefix}/{device}/status"
                published.append(pub.publish(topic, data, qos=1))
        for info in published:
            info.wait_for_publish(timeout=5)
        total = len(published)
        wait_until(lambda: sum(it.counts().values()) >= total, 15, "every message to be accounted")
        for name in poison:
            assert it.stored("status", f"good-{name}"), name
            assert not it.stored("status", name), name
        counts = it.counts()
        assert counts[("ingested", "status")] == len(poison)
        assert counts[("invalid", "status")] + counts[("invalid", "store")] == len(poison)
        assert counts[("invalid", "error")] == 0
    finally:
        pub.disconnect()
        pub.loop_stop()
        it.close()
