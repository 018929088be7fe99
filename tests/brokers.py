"""Real MQTT brokers on 127.0.0.1 for the suite (registered by tests/conftest.py).

Fixtures:
    mosquitto         session-wide Mosquitto, shared; do not stop it
    mosquitto_broker  a private Mosquitto for one test; may be stopped/restarted/killed
    embedded_broker   a private embedded amqtt broker (coordinator.broker) for one test
    broker            parametrised over both: the same test runs against each

Each yields a :class:`Broker` with ``host``, ``port``, ``kind`` and ``stop()``/``start()``/
``restart()``; a restart keeps the port, so clients reconnect to the same address.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_until_closed(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while accepts(port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"port {port} still accepts connections after {timeout} s")
        time.sleep(0.02)


class Broker:
    """A broker a test can talk to; subclasses know how to stop and start it again."""

    kind = "external"

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    def start(self) -> None:
        """Start serving again on the same port (no-op for an external broker)."""

    def stop(self) -> None:
        """Stop serving (no-op for an external broker)."""

    def restart(self) -> None:
        self.stop()
        self.start()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.host}:{self.port})"


class MosquittoBroker(Broker):
    """``/usr/sbin/mosquitto`` with a temp config; ``kill()`` sends SIGKILL."""

    kind = "mosquitto"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__("127.0.0.1", port or 0)
        self.workdir = workdir
        self.log_path = workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        for _attempt in range(3):
            port = self.port or free_port()
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(
                f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                "log_dest stderr\nmax_queued_messages 100000\n"
            )
            self._log = self.log_path.open("ab")
            proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(conf)], stdout=self._log, stderr=self._log
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not accepts(port):
                try:
                    proc.wait(timeout=0.05)  # exited: port taken or bad config
                    break
                except subprocess.TimeoutExpired:
                    continue
            if proc.poll() is None and accepts(port):
                self._proc, self.port = proc, port
                return
            proc.kill()
            proc.wait(timeout=5)
            self._log.close()
            if self.port:  # a restart must keep its port; wait for the old socket to go
                time.sleep(0.2)
        raise RuntimeError(f"mosquitto did not start; see {self.log_path}")

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        self._end(signal.SIGKILL)

    def _end(self, sig: int) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
        wait_until_closed(self.port)


class EmbeddedTestBroker(Broker):
    """The coordinator's embedded amqtt broker (MQTT 3.1.1 only)."""

    kind = "embedded"

    def __init__(self) -> None:
        from coordinator.broker import EmbeddedBroker

        self._broker = EmbeddedBroker("127.0.0.1", 0)
        super().__init__("127.0.0.1", 0)

    def start(self) -> None:
        self._broker.start()
        self.port = self._broker.port

    def stop(self) -> None:
        self._broker.stop()
        if self.port:
            wait_until_closed(self.port)


def _need_mosquitto() -> None:
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")


def _need_amqtt() -> None:
    pytest.importorskip("amqtt", reason="amqtt is not installed (pip install '.[coordinator]')")


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A real Mosquitto shared by the session; tests must not stop it."""
    _need_mosquitto()
    broker = MosquittoBroker(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mosquitto_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """A private Mosquitto for one test: stop, restart or kill it at will."""
    _need_mosquitto()
    broker = MosquittoBroker(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def embedded_broker() -> Iterator[EmbeddedTestBroker]:
    """A private embedded amqtt broker for one test."""
    _need_amqtt()
    broker = EmbeddedTestBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(params=["mosquitto", "embedded"])
def broker(request: pytest.FixtureRequest) -> Broker:
    """Each test using this runs once against Mosquitto and once against the embedded broker."""
    name = "mosquitto_broker" if request.param == "mosquitto" else "embedded_broker"
    broker: Broker = request.getfixturevalue(name)
    return broker
