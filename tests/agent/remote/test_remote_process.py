"""Remote configuration end to end: a real ``orchard-agent run`` process, real Mosquitto, and
retained commands signed in the test by a real fleet CA's signer, as the coordinator sends them.
The test plays systemd: when the agent exits it starts it again."""

from __future__ import annotations

import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent import exit_codes
from agent.health.schema import Ack
from agent.remote.command import Command
from tests.agent.remote.helpers import Fleet, fleet, snapshot
from tests.brokers import Broker, free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def signers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with fleet(tmp_path_factory.mktemp("fleet")) as f:
        yield f


class Coordinator:
    """Publishes retained commands on the device's ``command`` topic and collects its acks."""

    def __init__(self, port: int, device: str) -> None:
        self.base = f"orchard/v1/{device}"
        self.acks: list[tuple[float, Ack]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *args: subscribed.set()
        self._client.connect("127.0.0.1", port, keepalive=10)
        self._client.subscribe(f"{self.base}/ack", qos=1)
        self._client.loop_start()
        if not subscribed.wait(10):
            raise TimeoutError("subscription not acknowledged")

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.acks.append((time.monotonic(), Ack.from_json(msg.payload)))

    def send(self, command: Command | None) -> float:
        """Publish ``command`` retained (``None`` clears it); the time it left."""
        payload = "" if command is None else command.to_json()
        sent = time.monotonic()
        self._client.publish(f"{self.base}/command", payload, qos=1, retain=True).wait_for_publish(
            5
        )
        return sent

    def ack(self, seq: int, status: str, timeout: float = 30.0) -> tuple[float, Ack]:
        def found() -> tuple[float, Ack] | None:
            with self._lock:
                return next(
                    ((t, a) for t, a in self.acks if (a.seq, a.status) == (seq, status)), None
                )

        return wait_until(found, timeout, f"ack {status} for command {seq}")

    def statuses(self) -> list[tuple[int, str]]:
        with self._lock:
            return [(a.seq, a.status) for _, a in self.acks]

    def close(self) -> None:
        self.send(None)
        self._client.disconnect()
        self._client.loop_stop()


@dataclass
class Board:
    device: str
    config: Path
    state: Path
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    exits: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "orchard-agent"), "run", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def exited(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the agent did not exit: {self.tail()}") from None
        self.exits.append(code)
        return code

    def serving(self, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until the agent answers ``/healthz`` and its MQTT link is up."""

        def up() -> dict[str, Any] | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"the agent exited ({self.proc.returncode}): {self.tail()}")
            try:
                body: dict[str, Any] = httpx.get(f"{self.url}/healthz", timeout=2).json()
            except httpx.HTTPError:
                return None
            return body if body.get("mqtt", {}).get("connected") else None

        return wait_until(up, timeout, f"{self.device} serving with MQTT connected")

    def samples_since(self, ts: float) -> int:
        with sqlite3.connect(f"file:{self.state / 'store.db'}?mode=ro", uri=True) as db:
            (count,) = db.execute("SELECT COUNT(*) FROM samples WHERE ts > ?", (ts,)).fetchone()
        return int(count)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def board(tmp_path: Path, mosquitto: Broker, signers: Fleet) -> Iterator[Board]:
    device = f"rc-{uuid.uuid4().hex[:8]}"
    port = free_port()
    config = tmp_path / "agent.toml"
    config.write_text(
        f'device_id = "{device}"\nstate_dir = "{tmp_path / "state"}"\n'
        '[sensors.env]\ndriver = "synthetic"\ninterval_s = 1.0\n'
        f"[http]\nport = {port}\n"
        f'[models]\ntrust_ca = "{signers.ca_pem}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {mosquitto.port}\nhealth_interval_s = 5\n'
        "[remote]\nhealthy_within_s = 20\n"
    )
    b = Board(device, config, tmp_path / "state", port, tmp_path / "agent.log")
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def coordinator(board: Board, mosquitto: Broker) -> Iterator[Coordinator]:
    c = Coordinator(mosquitto.port, board.device)
    try:
        yield c
    finally:
        c.close()


class Hammer:
    """GETs ``/healthz`` back to back until stopped; every failure is kept."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                try:
                    r = client.get(f"{self.url}/healthz")
                    if r.status_code == 200:
                        self.ok += 1
                    else:
                        self.failures.append(f"{r.status_code}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_a_live_change_is_applied_without_dropping_the_endpoint(
    board: Board, coordinator: Coordinator, signers: Fleet
) -> None:
    board.serving()
    pid = board.proc.pid if board.proc else None
    took: list[float] = []
    with Hammer(board.url) as hammer:
        for seq, interval in enumerate(["0.5", "0.3", "0.4", "0.25", "0.2"], start=1):
            command = signers.command(board.device, seq, {"sensors.env.interval_s": interval})
            sent = coordinator.send(command)
            received, ack = coordinator.ack(seq, "applied", timeout=10)
            took.append(received - sent)
            assert ack.live and ack.config_version
    assert hammer.failures == [] and hammer.ok > 20, hammer.failures[:5]
    assert board.proc is not None and board.proc.poll() is None and board.proc.pid == pid
    # the sampler reads every 0.2 s now: 8 readings within 3 s (at 1 s it would take 8 s)
    since = time.time()
    wait_until(lambda: board.samples_since(since) >= 8, 3.0, "readings every 0.2 s")
    print(f"command -> applied (live, loopback): median {statistics.median(took) * 1000:.0f} ms")
    assert statistics.median(took) < 2.0
    assert coordinator.statuses() == [(n, "applied") for n in range(1, 6)]


def test_wrong_unsigned_replayed_expired_or_forbidden_commands_change_nothing(
    board: Board, coordinator: Coordinator, signers: Fleet
) -> None:
    board.serving()
    coordinator.send(signers.command(board.device, 10, {"sampling.interval_s": "2"}))
    _, applied = coordinator.ack(10, "applied")
    remote = board.state / "remote"
    before = snapshot(remote)
    assert before  # the overlay, the last command's seq, the signer's certificate

    bad = {"sampling.interval_s": "-3", "training.memry_mb": "300"}
    coordinator.send(signers.command(board.device, 11, bad))
    _, rejected = coordinator.ack(11, "rejected")
    assert "sampling.interval_s: expected a positive number. Received: interval_s=-3" in (
        rejected.errors
    )
    assert any("training.memry_mb" in e and "memory_mb" in e for e in rejected.errors)

    cases: list[tuple[Command, str]] = [
        (signers.command(board.device, 12, {"sampling.interval_s": "3"}, by=None), "signed"),
        (
            signers.command(board.device, 13, {"sampling.interval_s": "3"}, by=signers.stranger),
            "(issuer)",
        ),
        (signers.command(board.device, 9, {"sampling.interval_s": "3"}), "replayed or stale"),
        (
            signers.command(board.device, 14, {"sampling.interval_s": "3"}, issued=1.0e9),
            "(expired)",
        ),
        (signers.command(board.device, 15, {"models.trust_ca": '"/tmp/ca.pem"'}), "trust_ca"),
    ]
    for command, reason in cases:
        coordinator.send(command)
        _, ack = coordinator.ack(command.seq, "refused")
        assert reason in ack.errors[0], ack.errors
        assert ack.config_version == applied.config_version  # the old config still runs
    assert snapshot(remote) == before
    assert board.proc is not None and board.proc.poll() is None
    board.serving()


def test_a_restart_change_is_kept_and_one_that_cannot_run_is_rolled_back(
    board: Board, coordinator: Coordinator, signers: Fleet
) -> None:
    board.serving()
    coordinator.send(signers.command(board.device, 1, {"http.max_body_bytes": "2000000"}))
    _, restarting = coordinator.ack(1, "restarting")
    assert board.exited() == exit_codes.RESTART
    board.start()  # as systemd would (Restart=on-failure)
    board.serving()
    _, applied = coordinator.ack(1, "applied")
    assert not applied.live and applied.config_version != restarting.config_version
    check = subprocess.run(
        [str(BIN / "orchard-agent"), "check-config", str(board.config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "http.max_body_bytes" in check and f"config version {applied.config_version}" in check

    # Valid, but it cannot run: the new port is taken. Two failed starts, then the last good.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        coordinator.send(signers.command(board.device, 2, {"http.port": str(port)}))
        coordinator.ack(2, "restarting")
        assert board.exited() == exit_codes.RESTART
        for _ in range(2):
            board.start()
            assert board.exited() == exit_codes.RUNTIME_FAILURE
        board.start()
        board.serving()  # on the old port
    _, rolled = coordinator.ack(2, "rolled_back")
    assert "not healthy in 2 start(s)" in rolled.errors[0] and "http.port" in rolled.errors[0]
    assert rolled.config_version == applied.config_version
    assert [s for _, s in coordinator.statuses()] == [
        "restarting",
        "applied",
        "restarting",
        "rolled_back",
    ]
