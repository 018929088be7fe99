"""What the model-lifecycle tests share: round bundles, agent processes, a labelled CSV replay.

Models are trained and exported here, in the test process (TensorFlow), and written where the
ServerApp writes its checkpoints (``runs/<run-id>/round-<n>/``), so the coordinator's catalog
serves them exactly as it serves a real run's rounds. A "bad" model is trained on shuffled
labels: it predicts confidently and wrongly, which only labels from the field can reveal.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from tests.waiting import wait_until

BIN = Path(sys.executable).parent
RUN_ID = "run-e2e"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_round(runs_dir: Path, round_: int, *, good: bool, seed: int) -> str:
    """Train and export the room classifier as ``runs/RUN_ID/round-<round_>/``; its version."""
    from models import families, synthetic
    from models.export import export_tflite
    from models.training import TrainSettings, fit

    ds = synthetic.make("mlp", "classify", n=600, seed=seed)
    y = ds.y if good else np.random.default_rng(seed).permutation(ds.y)
    model = families.build(ds.spec)
    fit(model, ds.spec, (ds.x, y), TrainSettings(epochs=8, learning_rate=3e-3, seed=seed))
    version = f"{RUN_ID}.{round_}"
    export_tflite(
        model,
        ds.spec,
        runs_dir / RUN_ID / f"round-{round_}",
        representative=ds.x[:200],
        held=(ds.x[:60], y[:60]),
        name="rooms",
        version=version,
    )
    return version


def labelled_csv(path: Path, rows: int, seed: int) -> Path:
    """Recorded readings with the room state someone wrote down: features + ``label``."""
    from models import synthetic

    ds = synthetic.make("mlp", "classify", n=rows, seed=seed)
    assert ds.y is not None
    names = ds.spec.input.feature_names
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*names, "label"])
        for x, y in zip(ds.x, ds.y, strict=True):
            writer.writerow([*(f"{v:.4f}" for v in x), ds.spec.labels[int(y)]])
    return path


@dataclass
class Agent:
    device_id: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    labelled: int = 0

    def healthz(self) -> dict[str, object]:
        return httpx.get(f"{self.url}/healthz", timeout=5).json()  # type: ignore[no-any-return]

    def serving(self) -> str | None:
        try:
            model = self.healthz().get("model")
        except httpx.HTTPError:
            return None
        return model.get("version") if isinstance(model, dict) else None  # type: ignore[return-value]


@contextmanager
def agents(
    tmp_path: Path, names: list[str], broker_port: int, *, health_s: float = 2.0
) -> Iterator[list[Agent]]:
    """Real ``orchard-agent run`` processes reporting to the broker at ``broker_port``."""
    started: list[Agent] = []
    try:
        for name in names:
            port = free_port()
            cfg = tmp_path / f"{name}.toml"
            cfg.write_text(
                f'device_id = "{name}"\nstate_dir = "{tmp_path / name}"\n'
                '[sensors.env]\ndriver = "synthetic"\ninterval_s = 1.0\n'
                f"[http]\nport = {port}\n"
                "[models]\nretry_min_s = 0.5\nretry_max_s = 5\n"
                "[labels]\nmax_per_minute = 60000\n"
                f'[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\n'
                f"health_interval_s = {health_s}\n"
            )
            log = tmp_path / f"{name}.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    [str(BIN / "orchard-agent"), "run", "--config", str(cfg)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            started.append(Agent(name, f"http://127.0.0.1:{port}", proc, log))
        for a in started:
            wait_until(lambda a=a: _up(a), timeout=60, what=f"{a.device_id} serving HTTP")
        yield started
    finally:
        for a in started:
            if a.proc.poll() is None:
                a.proc.terminate()
        for a in started:
            try:
                a.proc.wait(15)
            except subprocess.TimeoutExpired:
                a.proc.kill()
                a.proc.wait(5)


def _up(agent: Agent) -> bool:
    if agent.proc.poll() is not None:
        raise AssertionError(f"{agent.device_id} exited: {agent.log.read_text()[-3000:]}")
    try:
        return httpx.get(f"{agent.url}/healthz", timeout=2).status_code in (200, 503)
    except httpx.HTTPError:
        return False


@dataclass
class Replay:
    """Replays a labelled CSV into every agent: predict each row, then label it (as a local
    system that learns the truth later would). Runs until stopped."""

    csv_path: Path
    fleet: list[Agent]
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Replay:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        with open(self.csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        with httpx.Client(timeout=5) as client:
            i = 0
            while not self._stop.is_set():
                row = rows[i % len(rows)]
                i += 1
                features = [float(v) for k, v in row.items() if k != "label"]
                for agent in self.fleet:
                    self._one(client, agent, features, row["label"])
                self._stop.wait(0.01)

    def _one(self, client: httpx.Client, agent: Agent, features: list[float], label: str) -> None:
        try:
            r = client.post(f"{agent.url}/api/predict", json={"features": features})
            if r.status_code != 200:
                return  # no model yet: nothing to label
            pid = r.json()["prediction_id"]
            r = client.post(f"{agent.url}/api/labels", json={"prediction_id": pid, "label": label})
            if r.status_code == 200:
                agent.labelled += 1
            else:
                self.errors.append(f"{agent.device_id}: {r.status_code} {r.text[:200]}")
        except httpx.HTTPError as exc:
            self.errors.append(f"{agent.device_id}: {exc}")


@contextmanager
def coordinator_serving(
    cfg: Path, log: Path, timeout: float = 90
) -> Iterator[subprocess.Popen[bytes]]:
    """``orchard-coordinator serve --config cfg`` until the block ends (SIGTERM, then KILL)."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [str(BIN / "orchard-coordinator"), "serve", "--config", str(cfg)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: b"serving until" in log.read_bytes() or proc.poll() is not None,
            timeout=timeout,
            what="the coordinator serving",
        )
        assert proc.poll() is None, log.read_text()[-3000:]
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
