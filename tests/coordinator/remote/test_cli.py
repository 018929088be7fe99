"""``orchard-coordinator config`` through the real CLI app, a real Mosquitto, a real registry,
the real health ingest and signatures from a real fleet CA."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.remote.command import Command, signed_bytes
from coordinator.dashboard.server import DashboardServer
from coordinator.delivery.catalog import Catalog
from coordinator.delivery.server import create_app
from coordinator.health.ingest import HealthIngest
from coordinator.health.registry import Registry
from orchard_common.errors import SignatureError
from orchard_common.signing import verify
from tests.brokers import Broker, free_port

from .conftest import BOARDS, Board, Signing, Site, Subscriber, ack, acks_stored, make_site, seqs_of

pytestmark = pytest.mark.slow


@pytest.fixture
def site(tmp_path: Path, mosquitto: Broker, signing: Signing) -> Site:
    return make_site(tmp_path, mosquitto.port, signing)


@pytest.fixture
def registry(site: Site) -> Iterator[Registry]:
    """The running coordinator's side: its ingest storing what boards send into the registry."""
    reg = Registry(site.registry_path)
    m = site.settings.health.mqtt
    assert m.host is not None
    ingest = HealthIngest(m, m.host, m.port, reg)
    ingest.start()
    assert ingest.wait_subscribed(10), "ingest did not subscribe"
    yield reg
    ingest.stop()
    reg.close()


def retained_commands(site: Site, mosquitto: Broker, expected: int) -> dict[str, Command]:
    """What a board subscribing now would get: the retained command on each topic."""
    sub = Subscriber(mosquitto.host, mosquitto.port, f"{site.prefix}/#")
    try:
        marker = f"{site.prefix}/zz-marker"  # after the retained burst on the same subscription
        sub.client.publish(marker, b"x", qos=1).wait_for_publish(10)
        sub.wait_for(marker)
        found = {}
        for topic, (payload, retained) in sub.messages.items():
            if topic.endswith("/command"):
                assert retained, topic
                found[topic] = Command.from_json(payload)
        assert len(found) == expected, sorted(found)
        return found
    finally:
        sub.close()


def test_set_publishes_signed_retained_commands_to_a_group(
    site: Site, mosquitto: Broker, signing: Signing
) -> None:
    code, out = site.cli(
        "set", "--group", "barn", "sampling.interval_s=5", "training.allowed_hours=[6,22]",
        'labels.mqtt_topic="home/x"', "--unset", "logging.level",
    )  # fmt: skip
    assert code == 0, out
    assert "pi-1: seq" in out and "pi-2: seq" in out and "pi-3" not in out
    assert "sent 2 command(s), signed by" in out

    found = retained_commands(site, mosquitto, expected=2)
    assert sorted(found) == [site.topics("pi-1").command, site.topics("pi-2").command]
    d = site.settings.delivery
    catalog = Catalog.from_settings(d, site.settings.runs_dir)
    server = DashboardServer(create_app(catalog), d.host, d.port, name="delivery")
    server.start()
    try:
        with httpx.Client(timeout=10) as client:
            for topic, command in found.items():
                assert topic == site.topics(command.device_id).command
                assert command.kind == "config"
                assert command.patch == {
                    "sampling.interval_s": "5",
                    "training.allowed_hours": "[6,22]",
                    "labels.mqtt_topic": '"home/x"',
                    "logging.level": None,
                }
                assert command.expires - command.issued == pytest.approx(3600)
                assert command.signer_url == f"{d.url}/signer.pem"
                assert command.signature is not None and command.signer is not None
                # as a board checks it: the signer fetched from signer_url, the fleet CA
                pem = client.get(command.signer_url).content
                verify(
                    signed_bytes(command),
                    command.signature,
                    pem,
                    signing.ca_pem,
                    expected_fingerprint=command.signer,
                )
                forged = dataclasses.replace(command, patch={"sampling.interval_s": "1"})
                with pytest.raises(SignatureError) as caught:
                    verify(
                        signed_bytes(forged),
                        command.signature,
                        pem,
                        signing.ca_pem,
                        expected_fingerprint=command.signer,
                    )
                assert caught.value.reason == "signature"
    finally:
        server.stop()

    # --group all: every device the registry knows, each in its fleet's topic tree; pi-1's
    # seq grows; --expires is honoured.
    first = seqs_of(site, "pi-1")
    code, out = site.cli("set", "--group", "all", "sampling.interval_s=10", "--expires", "90s")
    assert code == 0, out
    found = retained_commands(site, mosquitto, expected=len(BOARDS))
    assert sorted(found) == sorted(site.topics(d).command for d in BOARDS)
    assert found[site.topics("pi-4").command].device_id == "pi-4"
    assert site.topics("pi-4").command == f"{site.prefix}/pi-4/command"  # no fleet level
    again = found[site.topics("pi-1").command]
    assert again.seq > first[0] and seqs_of(site, "pi-1") == [first[0], again.seq]
    assert again.expires - again.issued == pytest.approx(90)
    # pi-1 had not answered the first command: its keys come along, under the new value
    assert again.patch["training.allowed_hours"] == "[6,22]"
    assert again.patch["sampling.interval_s"] == "10"
    assert "carried forward (not read by the board yet)" in out


def test_wrong_input_is_refused_before_anything_is_sent(tmp_path: Path, signing: Signing) -> None:
    closed = free_port()  # nothing listens: a refusal must come before any connection
    site = make_site(tmp_path, closed, signing)

    code, out = site.cli(
        "set", "--device", "pi-1", 'mqtt.host="evil"', "sampling.interval_s=fast", "Bad.Key=1",
    )  # fmt: skip
    assert code == 2, out
    assert "3 wrong key(s) or value(s), nothing was sent" in out
    assert "mqtt.host: expected a key that may change remotely" in out
    assert "sampling.interval_s: expected one TOML value on one line" in out
    assert "Bad.Key: expected a dotted key like section.key" in out

    for args, named in [
        (["--device", "pi-1", "--unset", "device_id"], "device_id: expected a key that may"),
        (["--device", "pi-1"], "at least one KEY=VALUE or --unset KEY"),
        (["a.b=1"], "either --device ID or --group G"),
        (["--device", "pi-1", "--group", "barn", "a.b=1"], "either --device ID or --group G"),
        (["--device", "pi-9", "a.b=1"], "device: expected devices the registry knows"),
        (["--group", "nope", "a.b=1"], "'all' or a fleet with known devices (barn, field)"),
        (["--device", "pi-1", "a.b=1", "--expires", "0"], "expires: expected a duration in"),
        (["--device", "pi-1", "a.b=1", "--expires", "soon"], "expires: expected a duration"),
        (["--device", "pi-1", "a.b=1", "--wait", "-1"], "wait: expected a duration"),
    ]:
        code, out = site.cli("set", *args)
        assert code == 2, (args, out)
        assert named in out, (args, out)
    assert not site.store_path.exists()  # nothing was issued

    # A broker that is not there: exit 1, nothing stored either.
    code, out = site.cli("set", "--device", "pi-1", "a.b=1")
    assert code == 1, out
    assert f"nothing sent: cannot reach the MQTT broker 127.0.0.1:{closed}" in out


def test_unsigned_commands_are_never_sent(tmp_path: Path) -> None:
    site = make_site(tmp_path, free_port(), None)
    code, out = site.cli("set", "--device", "pi-1", "sampling.interval_s=5")
    assert code == 1, out
    assert "refusing to send unsigned commands" in out
    assert "orchard-provision ca signer-cert" in out
    assert "[delivery] signing_cert and signing_key" in out
    assert not site.store_path.exists()


def test_acks_reach_the_registry_and_history_and_show_report_them(
    site: Site, mosquitto: Broker, registry: Registry
) -> None:
    from tests.coordinator.health.helpers import Publisher

    board = Publisher(mosquitto.host, mosquitto.port)
    ack_topic = site.topics("pi-1").ack

    def answer(seq: int, status: str, **kw: object) -> None:
        board.raw(ack_topic, ack(seq, status, **kw).encode())

    try:
        assert site.cli("set", "--device", "pi-1", "sampling.interval_s=5")[0] == 0
        (s1,) = seqs_of(site, "pi-1")
        answer(s1, "restarting")
        applied = ack(s1, "applied", config_version="00112233aabbccdd")
        board.raw(ack_topic, applied.encode())
        board.raw(ack_topic, applied.encode())  # a QoS 1 redelivery: stored once
        acks_stored(registry, "pi-1", 2)

        assert site.cli("set", "--device", "pi-1", "training.memory_mb=9")[0] == 0
        s2 = seqs_of(site, "pi-1")[-1]
        error = "training.memory_mb: expected an integer >= 64. Received: memory_mb=9"
        answer(s2, "rejected", config_version="00112233aabbccdd", errors=(error,))
        acks_stored(registry, "pi-1", 3)

        assert site.cli("set", "--device", "pi-1", "labels.mqtt_topic=", "a.b=1")[0] == 0
        s3 = seqs_of(site, "pi-1")[-1]
        answer(s3, "applied", config_version="4455667788990011", live=True)
        acks_stored(registry, "pi-1", 4)

        assert site.cli("set", "--device", "pi-1", "sampling.interval_s=7")[0] == 0
        s4 = seqs_of(site, "pi-1")[-1]
        assert registry.acks("pi-1", [s4]) == []
    finally:
        board.close()

    code, out = site.cli("history", "pi-1", "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["device_id"] == "pi-1"
    rows = doc["commands"]
    assert [(r["seq"], r["outcome"]) for r in rows] == [
        (s1, "applied"),
        (s2, "rejected"),
        (s3, "applied"),
        (s4, "pending"),
    ]
    assert [a["status"] for a in rows[0]["acks"]] == ["restarting", "applied"]
    assert rows[1]["acks"][0]["errors"] == [error]
    assert rows[1]["patch"] == {"training.memory_mb": "9"}  # s1 was answered: nothing carried
    assert rows[2]["acks"][0]["config_version"] == "4455667788990011"
    assert rows[2]["acks"][0]["live"] is True
    assert rows[3]["published"] is not None and rows[3]["acks"] == []

    code, out = site.cli("history", "pi-1")
    assert code == 0, out
    assert f"seq {s2}" in out and "rejected: training.memory_mb=9" in out
    assert f"rejected: config_version 00112233aabbccdd; {error}" in out

    code, out = site.cli("show", "pi-1", "--json")
    assert code == 0, out
    shown = json.loads(out)
    assert shown["fleet"] == "barn" and shown["state"] == "ready"
    assert shown["applied"] == {"a.b": "1", "labels.mqtt_topic": None, "sampling.interval_s": "5"}
    assert shown["applied_seqs"] == [s1, s3]
    assert shown["config_version"] == "4455667788990011"
    assert [p["seq"] for p in shown["pending"]] == [s4]

    code, out = site.cli("show", "pi-1")
    assert code == 0, out
    assert "pi-1 (fleet barn, ready): config_version 4455667788990011" in out
    assert "  sampling.interval_s = 5" in out and "  labels.mqtt_topic (removed)" in out
    assert f"  seq {s4} pending, expires" in out

    code, out = site.cli("show", "pi-77")
    assert code == 2 and "pi-77: the registry" in out


def test_wait_prints_each_device_outcome(
    site: Site, mosquitto: Broker, registry: Registry, boards: list[Board]
) -> None:
    error = "sampling.interval_s: expected a number >= 1. Received: interval_s=0.5"

    def restarts_then_applies(command: Command) -> list[str]:
        return [
            ack(command.seq, "restarting"),
            ack(command.seq, "applied", config_version="aaaabbbbccccdddd"),
        ]

    def rejects(command: Command) -> list[str]:
        return [ack(command.seq, "rejected", errors=(error,))]

    h, p = mosquitto.host, mosquitto.port
    boards.append(Board(h, p, site.topics("pi-1"), restarts_then_applies))
    boards.append(Board(h, p, site.topics("pi-2"), rejects))
    for board in boards:  # subscribed before the command goes out
        board.client.publish(f"{site.prefix}/sync", b"", qos=1).wait_for_publish(10)

    code, out = site.cli("set", "--group", "barn", "sampling.interval_s=0.5", "--wait", "10s")
    assert code == 1, out  # pi-2 rejected it
    assert "pi-1: applied (after a restart; config_version aaaabbbbccccdddd)" in out
    assert f"pi-2: rejected (the old config keeps running): {error}" in out

    code, out = site.cli("set", "--device", "pi-1", "sampling.interval_s=2", "--wait", "10s")
    assert code == 0, out
    assert "pi-1: applied" in out and len(boards[0].seen) == 2

    # pi-3 has no board answering: a bounded wait, then "no answer yet" and exit 3
    code, out = site.cli("set", "--device", "pi-3", "sampling.interval_s=2", "--wait", "0.5")
    assert code == 3, out
    assert "pi-3: no answer yet" in out
    assert "the command stays retained until it expires" in out
