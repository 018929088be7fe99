"""The optional MQTT label topic against a real Mosquitto: labels published by another local
system (a Home Assistant automation, say) go through the same checks and storage as
``POST /api/labels``; refusals are logged and reported as a ``label_refused`` event without
the label's value; nothing malformed stops the intake or the reporter."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.health.reporter import HealthReporter
from tests.agent.health.conftest import health_settings, mqtt_settings
from tests.agent.health.helpers import Collector, fake_pi
from tests.agent.labels.conftest import ROOM, T0, Agent, MakeAgent, room_rows
from tests.brokers import Broker
from tests.fakes import FakeClock
from tests.waiting import wait_until

TOPIC = "home/pi-1/labels"


@pytest.fixture
def wired(
    make_agent: MakeAgent, mosquitto: Broker, tmp_path: Path
) -> Iterator[tuple[Agent, HealthReporter, Collector]]:
    agent = make_agent(mqtt_topic=TOPIC)
    reporter = HealthReporter(
        mqtt_settings(mosquitto.port),
        "pi-1",
        health=health_settings(tmp_path / "state", fake_pi(tmp_path / "board")),
    )
    agent.forward = reporter.event
    reporter.subscribe(TOPIC, agent.labels.on_mqtt)  # as the runner wires it
    collector = Collector(mosquitto.port, ("orchard/v1/pi-1/event",))
    reporter.start()
    try:
        yield agent, reporter, collector
    finally:
        collector.close()
        reporter.stop(timeout=2.0)


def labelled(agent: Agent) -> list[str]:
    ds = agent.store.dataset(ROOM, labels=True)
    return [] if ds.labels is None else ds.labels.tolist()


def test_labels_over_mqtt(
    wired: tuple[Agent, HealthReporter, Collector], monotonic: FakeClock
) -> None:
    agent, reporter, collector = wired
    agent.store.append_many(room_rows(3))
    pid = agent.latest()["prediction_id"]
    good = json.dumps({"prediction_id": pid, "label": "occupied"})

    def arrived() -> bool:  # publish until the subscription is in place (then it is idempotent)
        collector.publish(TOPIC, good)
        return labelled(agent) == ["occupied"]

    wait_until(arrived, 15.0, "a label published on the label topic to be stored", every=0.3)
    before = (agent.store.dataset(ROOM, labels=True).ts.tolist(), labelled(agent))

    # refused: an unknown class, garbage, a batch item naming an unknown id
    collector.publish(TOPIC, json.dumps({"prediction_id": pid, "label": "kitchen"}))
    collector.publish(TOPIC, "not json at all \xff")
    collector.publish(
        TOPIC,
        json.dumps(
            {
                "labels": [
                    {"timestamp": T0 + 20, "label": "empty"},
                    {"prediction_id": pid + "0", "label": "empty"},
                ]
            }
        ),
    )
    wait_until(lambda: agent.labels.refused_mqtt >= 3, 10.0, "three refusals")
    events = wait_until(lambda: collector.on("/event"), 10.0, "a label_refused event")
    payloads = [m.json() for m in events]
    refused = [p for p in payloads if p["kind"] == "label_refused"]
    assert len(refused) == 1  # one event a minute at most: the rest are counted
    assert refused[0]["data"] == {
        "field": "label",
        "reason": "out_of_range",
        "status": 422,
        "source": "mqtt",
        "suppressed": 0,
    }
    assert all("kitchen" not in m.payload.decode() for m in events)  # never the raw label
    assert (agent.store.dataset(ROOM, labels=True).ts.tolist(), labelled(agent)) == before

    monotonic.advance(61.0)
    collector.publish(TOPIC, json.dumps({"timestamp": T0 - 100, "label": "empty"}))
    later = wait_until(
        lambda: [m.json() for m in collector.on("/event") if m.json()["kind"] == "label_refused"][
            1:
        ],
        10.0,
        "the next label_refused event",
    )
    assert later[0]["data"]["field"] == "timestamp"
    assert later[0]["data"]["reason"] == "no_reading" and later[0]["data"]["suppressed"] == 2
    # the intake and the reporter carry on
    collector.publish(TOPIC, json.dumps({"timestamp": T0 + 1, "label": "empty"}))
    wait_until(lambda: labelled(agent) == ["empty", "occupied"], 10.0, "the next good label")
    assert reporter.transport.connected
