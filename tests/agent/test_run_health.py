"""The whole agent process reporting health to a real Mosquitto, seen by a raw mosquitto_sub."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.brokers import Broker

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _retained_status(broker: Broker, device: str) -> dict[str, Any]:
    """The retained status as a fresh subscriber sees it (``mosquitto_sub -C 1``)."""
    exe = shutil.which("mosquitto_sub")
    if exe is None:
        pytest.skip("mosquitto_sub is not installed (apt-get install mosquitto-clients)")
    done = subprocess.run(
        [
            exe,
            "-h",
            broker.host,
            "-p",
            str(broker.port),
            "-t",
            f"orchard/v1/{device}/status",
            "-C",
            "1",
            "-W",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _start(tmp_path: Path, broker: Broker, device: str) -> subprocess.Popen[str]:
    cfg = tmp_path / f"{device}.toml"
    cfg.write_text(
        f'device_id = "{device}"\nstate_dir = "{tmp_path / device}"\n'
        '[sensors.env]\ndriver = "synthetic"\ninterval_s = 0.5\n'
        "[http]\nport = 0\n"
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nhealth_interval_s = 2\n'
    )
    return subprocess.Popen(
        [str(BIN / "orchard-agent"), "run", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _until_state(broker: Broker, device: str, state: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen = _retained_status(broker, device)
        if seen.get("state") == state:
            return seen
    raise AssertionError(f"status of {device} never became {state!r}; last {seen}")


def test_kill_9_leaves_lost_and_a_clean_stop_leaves_disconnected(
    tmp_path: Path, mosquitto: Broker
) -> None:
    proc = _start(tmp_path, mosquitto, "pi-kill")
    try:
        first = _until_state(mosquitto, "pi-kill", "ready", 60)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        lost = _until_state(mosquitto, "pi-kill", "lost", 60)  # the broker's Last Will
        assert lost["session"] == first["session"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    proc = _start(tmp_path, mosquitto, "pi-kill")  # same state dir: the session goes on
    try:
        again = _until_state(mosquitto, "pi-kill", "ready", 60)
        assert again["session"] == first["session"] + 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert _retained_status(mosquitto, "pi-kill")["state"] == "disconnected"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
