"""Shared fixtures: a controllable clock and a real Mosquitto broker on a free port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@dataclass(frozen=True)
class Broker:
    host: str
    port: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A real Mosquitto on 127.0.0.1 at a random port, in a temp dir, for this session."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    workdir = tmp_path_factory.mktemp("mosquitto")
    for _attempt in range(3):
        port = free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n"
        )
        log = (workdir / "mosquitto.log").open("ab")
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and not _accepts(port):
            try:
                proc.wait(timeout=0.05)  # exited: port taken or bad config
                break
            except subprocess.TimeoutExpired:
                continue
        if proc.poll() is None and _accepts(port):
            try:
                yield Broker("127.0.0.1", port)
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                log.close()
            return
        proc.kill()
        proc.wait(timeout=5)
        log.close()
    pytest.fail(f"mosquitto did not start; see {workdir / 'mosquitto.log'}")
