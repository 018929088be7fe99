"""Fixtures for the remote configuration tests: a real fleet CA signer, a coordinator.toml, a
registry with boards in two fleets, MQTT clients for a plain subscriber and answering boards."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from typer.testing import CliRunner

from agent.health.schema import Ack, Topics
from agent.remote.command import Command
from coordinator import config as coordinator_config
from coordinator.cli import app
from coordinator.config import CoordinatorSettings
from coordinator.health.registry import Registry
from coordinator.remote.store import CommandStore
from provisioning.ca import FleetCA
from tests.brokers import free_port
from tests.coordinator.health.helpers import birth, status
from tests.waiting import wait_until

# device -> fleet, as the registry knows them (pi-4 reports without a fleet level)
BOARDS: dict[str, str | None] = {"pi-1": "barn", "pi-2": "barn", "pi-3": "field", "pi-4": None}


@dataclass(frozen=True)
class Signing:
    ca: FleetCA
    cert: Path
    key: Path

    @property
    def ca_pem(self) -> bytes:
        return (self.ca.dir / "ca.pem").read_bytes()


@pytest.fixture(scope="module")
def signing(tmp_path_factory: pytest.TempPathFactory) -> Signing:
    ca = FleetCA.init(tmp_path_factory.mktemp("pki") / "ca")
    cert, key = ca.signer_cert("coordinator")
    return Signing(ca, cert, key)


@dataclass(frozen=True)
class Site:
    """A coordinator's files: coordinator.toml, its registry (with BOARDS), the command store."""

    config: Path
    settings: CoordinatorSettings
    prefix: str  # a topic prefix of its own: the session's Mosquitto keeps retained messages

    @property
    def registry_path(self) -> Path:
        return self.settings.health.registry.resolve_path(self.settings.runs_dir)

    @property
    def store_path(self) -> Path:
        return self.registry_path.with_name("config.sqlite")

    def topics(self, device_id: str) -> Topics:
        return Topics(device_id, BOARDS.get(device_id), self.prefix)

    def cli(self, *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["config", *args, "-c", str(self.config)])
        return result.exit_code, result.output


def make_site(
    directory: Path,
    mqtt_port: int,
    signing: Signing | None,
    boards: dict[str, str | None] = BOARDS,
) -> Site:
    prefix = f"t{uuid.uuid4().hex[:8]}/v1"
    signer = f'signing_cert = "{signing.cert}"\nsigning_key = "{signing.key}"\n' if signing else ""
    config = directory / "coordinator.toml"
    config.write_text(
        f'state_dir = "{directory / "state"}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {mqtt_port}\ntopic_prefix = "{prefix}"\n'
        f"[delivery]\nport = {free_port()}\n{signer}"
        "[dashboard]\nenabled = false\n"
    )
    site = Site(config, coordinator_config.load(config), prefix)
    registry = Registry(site.registry_path)
    try:
        for device_id, fleet in boards.items():
            registry.record(device_id, fleet, status("ready"))
            registry.record(device_id, fleet, birth(device_id, interval_s=600))
    finally:
        registry.close()
    return site


class Subscriber:
    """A plain MQTT client that keeps the last message (and its retain flag) per topic."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.messages: dict[str, tuple[bytes, bool]] = {}
        self._cond = threading.Condition()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv311
        )
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()
        result, _mid = self.client.subscribe(topic, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages[msg.topic] = (bytes(msg.payload), bool(msg.retain))
            self._cond.notify_all()

    def wait_for(self, topic: str, timeout: float = 10.0) -> tuple[bytes, bool]:
        with self._cond:
            if not self._cond.wait_for(lambda: topic in self.messages, timeout):
                raise AssertionError(f"no message on {topic} within {timeout} s")
            return self.messages[topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def ack(seq: int, status: str, **kw: object) -> str:
    """A valid Ack payload, as the agent sends it (validated through the schema)."""
    payload = Ack(seq=seq, ts=time.time(), status=status, **kw).to_json()  # type: ignore[arg-type]
    Ack.from_json(payload)
    return payload


class Board:
    """A board's MQTT side: reads its retained command, answers each new one with acks.

    ``answer(command)`` returns the ack payloads to publish (none: stay silent).
    """

    def __init__(
        self,
        host: str,
        port: int,
        topics: Topics,
        answer: Callable[[Command], list[str]],
    ) -> None:
        self.topics = topics
        self.answer = answer
        self.seen: list[Command] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv311
        )
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()
        self.client.subscribe(topics.command, qos=1)

    def _on_message(self, client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        command = Command.from_json(msg.payload)
        if self.seen and command.seq <= self.seen[-1].seq:
            return  # a replay: the agent acts on a seq once
        self.seen.append(command)
        for payload in self.answer(command):
            client.publish(self.topics.ack, payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def boards() -> Iterator[list[Board]]:
    """Boards a test starts; closed at the end."""
    started: list[Board] = []
    yield started
    for board in started:
        board.close()


def seqs_of(site: Site, device_id: str) -> list[int]:
    with CommandStore(site.store_path) as store:
        return [c.seq for c in store.commands(device_id)]


def acks_stored(registry: Registry, device_id: str, n: int) -> None:
    wait_until(lambda: len(registry.acks(device_id)) >= n, what=f"{n} ack(s) from {device_id}")
