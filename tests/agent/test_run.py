"""The whole agent as a process: systemd readiness, serving, model inbox, no TensorFlow."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.waiting import wait_until

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _recv_until(sock: socket.socket, wanted: str, timeout: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            msg = sock.recv(4096).decode()
        except TimeoutError:
            break
        seen.append(msg)
        if wanted in msg:
            return seen
    raise AssertionError(f"no {wanted!r} from the agent; got {seen}")


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    """A float32 bundle of the room classifier, over the synthetic sensor's features."""
    from models import families, synthetic
    from models.export import export_tflite
    from models.training import TrainSettings, fit

    ds = synthetic.make("mlp", "classify", n=300)
    model = families.build(ds.spec)
    fit(model, ds.spec, (ds.x, ds.y), TrainSettings(epochs=3))
    out = tmp_path / "export"
    export_tflite(
        model,
        ds.spec,
        out,
        representative=ds.x,
        held=(ds.x[:60], ds.y[:60]),
        name="rooms",
        version="7",
    )
    return out


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[dict[str, Any]]:
    port = _free_port()
    state = tmp_path / "state"
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        f'device_id = "test-pi"\nstate_dir = "{state}"\n'
        f'[sensors.env]\ndriver = "synthetic"\ninterval_s = 0.05\n'
        f"[http]\nport = {port}\n"
    )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"}
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(BIN / "orchard-agent"), "run", "--config", str(cfg)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield {
            "proc": proc,
            "url": f"http://127.0.0.1:{port}",
            "state": state,
            "sock": sock,
            "started": started,
        }
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        sock.close()


@pytest.mark.slow
def test_agent_process_end_to_end(agent: dict[str, Any], exported: Path) -> None:
    proc, url, sock = agent["proc"], agent["url"], agent["sock"]
    _recv_until(sock, "READY=1", timeout=30)
    client = httpx.Client(base_url=url, timeout=5)

    health = client.get("/healthz").json()
    assert health["model_loaded"] is False
    assert health["tensorflow_loaded"] is False
    assert health["mqtt"] == {"enabled": False}  # no [mqtt] host: no health link
    assert (
        client.post("/api/predict", json={"features": [21, 45, 1013, 100, 450]}).status_code == 503
    )

    inbox = agent["state"] / "models" / "inbox"
    shutil.copytree(exported, inbox / ".rooms-7.tmp")
    (inbox / ".rooms-7.tmp").rename(inbox / "rooms-7")
    wait_until(lambda: client.get("/healthz").json()["model_loaded"], 30, "the model to load")
    assert client.get("/api/info").json()["version"] == "7"

    latest = wait_until(
        lambda: (r := client.get("/api/predict/latest")).status_code == 200 and r,
        30,
        "a prediction on the latest window",
    )
    assert latest.json()["result"]["label"] in ("empty", "occupied", "ventilating")

    # A truncated model in the inbox is rejected; the good one keeps serving.
    bad = inbox / ".broken.tmp"
    shutil.copytree(exported, bad)
    content = (bad / "model.tflite").read_bytes()
    (bad / "model.tflite").write_bytes(content[: len(content) // 3])
    bad.rename(inbox / "broken")
    rejected = agent["state"] / "models" / "rejected"
    wait_until(lambda: rejected.exists() and any(rejected.iterdir()), 30, "the rejection")
    assert client.get("/api/info").json()["version"] == "7"
    ok = client.post("/api/predict", json={"features": [21, 45, 1013, 100, 450]})
    assert ok.status_code == 200 and ok.json()["model_version"] == "7"

    _recv_until(sock, "WATCHDOG=1", timeout=10)
    maps = Path(f"/proc/{proc.pid}/maps").read_text()
    assert "libtensorflow" not in maps and "_pywrap_tensorflow" not in maps
    assert "_pydantic_core" not in maps  # no pydantic (nor FastAPI) in the always-on agent
    assert client.get("/healthz").json()["tensorflow_loaded"] is False

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0, proc.stdout.read() if proc.stdout else ""
    _recv_until(sock, "STOPPING=1", timeout=5)


def test_bad_config_exits_78(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text('device_id = "x"\n[sensors.a]\ndriver = "nope"\n')
    proc = subprocess.run(
        [str(BIN / "orchard-agent"), "run", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 78
    assert "sensors.a" in proc.stderr and "nope" in proc.stderr
