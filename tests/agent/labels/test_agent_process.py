"""Labels through a real ``orchard-agent run`` process: HTTP and the MQTT label topic on a real
Mosquitto, the live metrics in its health messages, and what a clean stop leaves on disk."""

from __future__ import annotations

import json
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

from agent.labels import PredictionLog
from agent.store import SqliteStore, StoreSettings
from tests.agent.health.helpers import Collector
from tests.agent.labels.conftest import ROOM
from tests.agent.serve.bundles import Bundles
from tests.brokers import Broker
from tests.waiting import wait_until

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
DEVICE = "pi-lab"
TOPIC = f"home/{DEVICE}/labels"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def running(tmp_path: Path, mosquitto: Broker) -> Iterator[dict[str, Any]]:
    port = _free_port()
    state = tmp_path / "state"
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        f'device_id = "{DEVICE}"\nstate_dir = "{state}"\n'
        '[sensors.env]\ndriver = "synthetic"\ninterval_s = 0.2\n'
        f"[http]\nport = {port}\n"
        f'[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\nhealth_interval_s = 1\n'
        f'[labels]\nmqtt_topic = "{TOPIC}"\nmax_per_minute = 600\n'
    )
    collector = Collector(mosquitto.port, (f"orchard/v1/{DEVICE}/#",))
    proc = subprocess.Popen(
        [str(BIN / "orchard-agent"), "run", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield {"proc": proc, "url": f"http://127.0.0.1:{port}", "state": state, "mqtt": collector}
    finally:
        collector.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_labels_reach_the_store_the_log_and_health(
    running: dict[str, Any], bundles: Bundles
) -> None:
    proc, state, mqtt = running["proc"], running["state"], running["mqtt"]
    client = httpx.Client(base_url=running["url"], timeout=5)
    inbox = state / "models" / "inbox"
    wait_until(lambda: inbox.is_dir(), 30, "the agent to start")
    shutil.copytree(bundles("mlp", "classify"), inbox / ".rooms.tmp")
    (inbox / ".rooms.tmp").rename(inbox / "rooms")
    wait_until(lambda: _get(client, "/healthz")["model_loaded"], 30, "the model to load")

    body = client.post("/api/predict", json={"features": [21, 45, 1013, 100, 450]}).json()
    assert isinstance(body["prediction_id"], str)

    def latest() -> httpx.Response | None:
        response = client.get("/api/predict/latest")
        return response if response.status_code == 200 else None

    answer = wait_until(latest, 30, "a prediction on the latest reading").json()
    r = client.post(
        "/api/labels", json={"prediction_id": answer["prediction_id"], "label": "empty"}
    )
    assert r.status_code == 200, r.text
    sample_ts = r.json()["results"][0]["sample_ts"]
    assert isinstance(sample_ts, float)

    # MQTT: a label for another prediction, then one the model cannot take
    second = client.get("/api/predict/latest").json()["prediction_id"]
    mqtt.publish(TOPIC, json.dumps({"prediction_id": second, "label": "occupied"}))
    mqtt.publish(TOPIC, json.dumps({"timestamp": time.time(), "label": "kitchen"}))

    def refused() -> list[dict[str, Any]]:
        return [e for e in (m.json() for m in mqtt.on("/event")) if e["kind"] == "label_refused"]

    (event,) = wait_until(refused, 30, "a label_refused event")
    assert event["data"]["field"] == "label" and event["data"]["reason"] == "out_of_range"

    def labelled_health() -> dict[str, Any] | None:
        for message in reversed(mqtt.on("/health")):
            models = message.json().get("models") or []
            if models and models[0]["labelled"] >= 2:
                return message.json()
        return None

    health = wait_until(labelled_health, 30, "health with two labelled predictions")
    (model,) = health["models"]
    assert model["version"] == "1" and model["predictions"] >= 3 and model["errors"] == 0
    assert model["p50_ms"] > 0 and 0 < model["mean_confidence"] <= 1
    assert sum(model["classes"].values()) == model["predictions"]
    assert model["accuracy"] is not None and model["drift_psi"] is None
    assert answer["prediction_id"] not in json.dumps(health)  # aggregates only

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, proc.stdout.read() if proc.stdout else ""
    # a clean stop wrote every prediction; the labels are on the log and on the readings
    log = PredictionLog(state / "predictions.db")
    try:
        assert log.count() >= model["predictions"]
        rows = log._conn.execute(
            "SELECT label, sample_ts FROM predictions WHERE label IS NOT NULL ORDER BY seq"
        ).fetchall()
    finally:
        log.close()
    assert rows[0] == ("empty", sample_ts) and rows[-1][0] == "occupied"
    store = SqliteStore(StoreSettings(path=state / "store.db"))
    try:
        ds = store.dataset(ROOM, labels=True)  # (the synthetic sensor labels every reading)
        assert ds.labels is not None
        by_ts = dict(zip(ds.ts.tolist(), ds.labels.tolist(), strict=True))
    finally:
        store.close()
    expected = {sample_ts: "empty", rows[-1][1]: "occupied"}  # one reading, if both read it
    assert {ts: by_ts[ts] for ts in expected} == expected


def _get(client: httpx.Client, path: str) -> Any:
    try:
        return client.get(path).json()
    except httpx.HTTPError:
        return {"model_loaded": False}
