"""The reporter against real brokers: Mosquitto (MQTT 5) and the embedded amqtt (3.1.1)."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import pytest

from agent.health.schema import (
    Birth,
    BirthParts,
    Event,
    Health,
    HealthParts,
    Inference,
    Sensors,
    Status,
)
from tests.agent.health.conftest import MakeReporter
from tests.agent.health.helpers import (
    Collector,
    retained,
    retained_status,
    set_temp,
    set_throttled,
)
from tests.brokers import Broker
from tests.fakes import FakeClock
from tests.waiting import wait_until

STATUS = "orchard/v1/pi-1/status"


def statuses(sub: Collector) -> list[Status]:
    return [Status.from_json(m.payload) for m in sub.on("/status")]


def healths(sub: Collector) -> list[Health]:
    return [Health.from_json(m.payload) for m in sub.on("/health")]


def test_negotiates_v5_with_mosquitto_and_311_with_the_embedded_broker(
    broker: Broker, make_reporter: MakeReporter
) -> None:
    sub = Collector(broker.port)
    reporter = make_reporter(broker.port, birth=lambda: BirthParts(agent_version="1.2.3"))
    reporter.start()
    wait_until(lambda: reporter.transport.connected, what="connect")
    assert reporter.transport.protocol == ("5" if broker.kind == "mosquitto" else "3.1.1")
    reporter.set_state("ready")
    wait_until(lambda: any(s.state == "ready" for s in statuses(sub)), what="ready status")
    wait_until(lambda: sub.on("/birth") and sub.on("/health"), what="birth and health")
    birth = Birth.from_json(sub.on("/birth")[0].payload)
    assert (birth.device_id, birth.agent_version, birth.session) == ("pi-1", "1.2.3", 1)
    assert birth.board == "Raspberry Pi 4 Model B Rev 1.5"
    assert retained_status(broker.port, STATUS, state="ready")["session"] == 1
    sub.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_protocol_can_be_forced(
    mosquitto: Broker, make_reporter: MakeReporter, protocol: str, tmp_path: Path
) -> None:
    reporter = make_reporter(mosquitto.port, mqtt={"protocol": protocol}, device_id=f"p{protocol}")
    reporter.start()
    wait_until(lambda: reporter.transport.connected, what="connect")
    assert reporter.transport.protocol == protocol


def test_clean_stop_leaves_disconnected_and_session_counts_connects(
    broker: Broker, make_reporter: MakeReporter, tmp_path: Path
) -> None:
    for session in (1, 2):
        reporter = make_reporter(broker.port, state_dir=tmp_path / "state")
        reporter.start()
        assert retained_status(broker.port, STATUS, state="init")["session"] == session
        reporter.stop()
        final = Status.validate(retained(broker.port, STATUS))
        assert (final.state, final.session) == ("disconnected", session)


def test_a_state_set_while_connecting_is_published_with_the_new_session(
    mosquitto: Broker, make_reporter: MakeReporter
) -> None:
    """The runner may say ``ready`` after paho reports the connection but before the connect
    hook has counted the session; that status must not go out under the old session (it could
    reach the broker last and stay retained)."""
    sub = Collector(mosquitto.port, topics=("orchard/v1/conn-1/#",))  # the broker is shared
    reporter = make_reporter(mosquitto.port, device_id="conn-1")
    entered, go_on = threading.Event(), threading.Event()
    hook = reporter._connected

    def held_connect(protocol: str) -> None:
        entered.set()
        assert go_on.wait(10)
        hook(protocol)

    reporter._connected = held_connect  # type: ignore[method-assign]
    reporter.start()
    assert entered.wait(30), "never connected"
    assert reporter.transport.connected
    reporter.set_state("ready")  # between paho's connect and the hook
    go_on.set()
    status = "orchard/v1/conn-1/status"
    assert retained_status(mosquitto.port, status, state="ready")["session"] == 1
    wait_until(lambda: any(s.state == "ready" for s in statuses(sub)), what="ready status")
    assert {s.session for s in statuses(sub)} == {1}
    sub.close()


def test_events_are_published_not_retained_and_bad_ones_dropped(
    mosquitto: Broker, make_reporter: MakeReporter
) -> None:
    sub = Collector(mosquitto.port, topics=("orchard/v1/ev-1/#",))
    reporter = make_reporter(mosquitto.port, device_id="ev-1")
    reporter.start()
    assert reporter.event("model_swap", {"from": "2", "to": "3"})
    assert not reporter.event("Bad Kind", {})
    assert not reporter.event("error", {"window": [1.0, 2.0]})  # no series of readings
    wait_until(lambda: sub.on("/event"), what="event")
    event = Event.from_json(sub.on("/event")[0].payload)
    assert (event.kind, event.data) == ("model_swap", {"from": "2", "to": "3"})
    assert not sub.on("/event")[0].retain
    sub.close()


def test_significant_change_sends_at_once_and_quiet_samples_do_not(
    mosquitto: Broker, make_reporter: MakeReporter, board: Path
) -> None:
    clock = FakeClock()
    sub = Collector(mosquitto.port, topics=("orchard/v1/chg-1/#",))
    reporter = make_reporter(
        mosquitto.port,
        device_id="chg-1",
        clock=clock,
        health={"cpu_step_pct": 1000.0, "mem_step_pct": 1000.0},  # only temperature counts
    )
    reporter.start()
    wait_until(lambda: len(healths(sub)) == 1, what="first health")
    clock.advance(1.0)
    set_temp(board, 49.0)  # 48 -> 49 °C: same 5 °C bucket, interval (30 s) not due
    reporter.tick()
    set_temp(board, 53.0)  # 53 °C: next bucket -> at once
    reporter.tick()
    wait_until(lambda: len(healths(sub)) == 2, what="change-triggered health")
    assert healths(sub)[-1].cpu_temp_c == 53.0
    clock.advance(30.0)  # interval due: periodic health even without change
    reporter.tick()
    wait_until(lambda: len(healths(sub)) == 3, what="periodic health")
    assert [h.seq for h in healths(sub)] == [1, 2, 3]
    sub.close()


def test_throttling_and_heat_put_the_board_in_alert(
    broker: Broker, make_reporter: MakeReporter, board: Path
) -> None:
    sub = Collector(broker.port)
    reporter = make_reporter(broker.port, health={"alert_temp_c": 75.0})
    reporter.start()
    reporter.set_state("ready")
    wait_until(lambda: reporter.transport.connected, what="connect")
    set_throttled(board, 0x50005)
    set_temp(board, 76.0)
    reporter.tick()
    # The worker may sample between the two file writes; the retained status follows the
    # reasons until all three are there.
    full = ("under_voltage", "throttled", "hot")
    wait_until(
        lambda: any(s.state == "alert" and s.reasons == full for s in statuses(sub)),
        what="alert with every reason",
    )
    hot = wait_until(
        lambda: [h for h in healths(sub) if h.cpu_temp_c == 76.0], what="health of the alert"
    )[-1]
    assert hot.throttling is not None
    assert hot.throttling.under_voltage and hot.throttling.throttled_occurred
    set_throttled(board, 0x50000)  # only "has occurred" bits left
    set_temp(board, 60.0)
    reporter.tick()
    wait_until(lambda: statuses(sub)[-1].state == "ready", what="back to ready")

    def changes() -> list[tuple[str, str]]:
        events = [Event.from_json(m.payload) for m in sub.on("/event")]
        return [
            (str(e.data["from"]), str(e.data["to"])) for e in events if e.kind == "state_change"
        ]

    wait_until(lambda: len(changes()) == 3, what="three state changes")
    assert changes() == [("init", "ready"), ("ready", "alert"), ("alert", "ready")]
    sub.close()


def test_no_raw_readings_reach_any_payload(mosquitto: Broker, make_reporter: MakeReporter) -> None:
    """The parts a runner hands over have no place for a reading; what is published is them."""
    assert {f.name for f in dataclasses.fields(HealthParts)} == {
        "model",
        "inference",
        "training",
        "federation",
        "sensors",
        "models",  # counts and class names only (LiveModel)
        "delivery",
    }
    assert {f.name for f in dataclasses.fields(BirthParts)} == {
        "agent_version",
        "sensors",
        "capabilities",
        "runtime",
        "model",
        "config_version",  # a digest of the effective agent.toml
    }
    sub = Collector(mosquitto.port, topics=("orchard/v1/raw-1/#",))
    reporter = make_reporter(
        mosquitto.port,
        device_id="raw-1",
        snapshot=lambda: HealthParts(sensors=Sensors(rate_hz=0.5, rejected=1)),
        birth=lambda: BirthParts(sensors=("room",)),
    )
    reporter.start()
    reporter.set_state("ready")
    reporter.event("error", {"what": "x"})
    wait_until(lambda: sub.on("/health") and sub.on("/birth") and sub.on("/event"), what="all")
    for msg in sub.messages:
        assert b"readings" not in msg.payload and b'"temp_c"' not in msg.payload
    assert healths(sub)[-1].sensors == Sensors(rate_hz=0.5, rejected=1, failed=())
    assert Birth.from_json(sub.on("/birth")[0].payload).sensors == ("room",)
    sub.close()


def test_a_part_that_fails_validation_costs_that_part_only(
    mosquitto: Broker, make_reporter: MakeReporter
) -> None:
    sub = Collector(mosquitto.port, topics=("orchard/v1/bad-1/#",))
    reporter = make_reporter(
        mosquitto.port,
        device_id="bad-1",
        snapshot=lambda: HealthParts(
            inference=Inference(count=-5),  # a bug elsewhere: a negative count
            sensors=Sensors(rate_hz=2.0),
        ),
    )
    reporter.start()
    wait_until(lambda: sub.on("/health"), what="health")
    health = healths(sub)[-1]
    assert health.inference == Inference() and health.sensors.rate_hz == 2.0
    sub.close()


def test_home_assistant_discovery_is_republished_when_ha_comes_online(
    broker: Broker, make_reporter: MakeReporter
) -> None:
    sub = Collector(broker.port, topics=("homeassistant/sensor/#",))
    reporter = make_reporter(broker.port, health={"ha_discovery": True})
    reporter.start()
    wait_until(lambda: len(sub.messages) >= 11, what="discovery configs")
    config = json.loads(sub.messages[0].payload)
    assert config["availability_topic"] == STATUS
    count = len(sub.messages)
    sub.publish("homeassistant/status", "offline")
    sub.publish("homeassistant/status", "online")
    wait_until(lambda: len(sub.messages) >= 2 * count, what="republished configs")
    sub.close()
