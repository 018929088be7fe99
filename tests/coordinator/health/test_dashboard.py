"""HealthService end to end: embedded broker, ingest, registry and the dashboard over real HTTP."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from coordinator.health.settings import FleetHealthSettings
from coordinator.health_service import HealthService
from tests.waiting import wait_until

from .helpers import Publisher, birth, health, status

pytestmark = pytest.mark.slow

HISTORY = {
    "run_id": "run-7",
    "rounds": [
        {
            "round": 1,
            "train": {"loss": 0.9, "num-examples": 120},
            "evaluate": {"loss": 1.0, "accuracy": 0.55},
            "central": {"accuracy": 0.5},
            "selected": ["1", "2"],
            "skipped": {"3": "pi-3: too hot"},
            "failures": 0,
            "duration_s": 4.1,
        },
        {
            "round": 2,
            "train": {"loss": 0.6},
            "evaluate": {"loss": 0.7, "accuracy": 0.71},
            "central": {"accuracy": float("nan")},
            "selected": ["1", "2"],
            "skipped": {},
            "failures": 1,
            "duration_s": 3.9,
        },
        {"round": "three"},
    ],
}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[HealthService]:
    settings = FleetHealthSettings.from_mapping({"mqtt": {"port": 0}, "dashboard": {"port": 0}})
    runs = tmp_path / "runs"
    (runs / "run-7").mkdir(parents=True)
    (runs / "run-7" / "history.json").write_text(json.dumps(HISTORY))
    svc = HealthService(settings, runs_dir=runs)
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture
def fleet(service: HealthService) -> Iterator[list[str]]:
    pub = Publisher(service.mqtt_host, service.mqtt_port)
    names = ["orchard-pi-a", "orchard-pi-b", "orchard-pi-c"]
    for i, name in enumerate(names):
        pub.send(name, status("ready" if i < 2 else "alert"), retain=True)
        pub.send(name, birth(name), retain=True)
        for seq in range(3):
            pub.send(
                name, health(seq=seq, temp=45.0 + i + seq, node_id=10 + i, version=f"v{i % 2}")
            )
    reg = service.registry
    assert reg is not None
    wait_until(lambda: all(len(reg.history(n)) == 3 for n in names), what="the fleet's health")
    yield names
    pub.close()


def test_embedded_broker_ingest_and_json_api(service: HealthService, fleet: list[str]) -> None:
    assert service.broker is not None and service.ingest is not None
    assert service.ingest.protocol == "3.1.1"
    base = service.dashboard_url
    assert base is not None
    with httpx.Client(base_url=base, timeout=10) as http:
        data = http.get("/api/fleet").json()
        assert [d["device_id"] for d in data["devices"]] == fleet
        assert data["counts"] == {"ready": 2, "alert": 1}
        assert data["models"] == {"v0": 2, "v1": 1}
        hist = http.get(f"/api/devices/{fleet[2]}/history").json()
        assert [p["cpu_temp_c"] for p in hist["points"]] == [47.0, 48.0, 49.0]
        spark = http.get("/api/sparklines", params={"metric": "cpu_temp_c", "points": 2}).json()
        assert spark["series"][fleet[0]] == [46.0, 47.0]
        one = http.get(f"/api/devices/{fleet[0]}").json()
        assert one["birth"]["device_id"] == fleet[0] and one["summary"]["node_id"] == 10
        missing = http.get("/api/devices/nobody/history")
        assert missing.status_code == 404 and "nobody" in missing.json()["detail"]
        assert http.get("/api/sparklines", params={"metric": "x"}).status_code == 422
        run = http.get("/api/runs/latest").json()
        assert run["run_id"] == "run-7" and [r["round"] for r in run["rounds"]] == [1, 2]
        assert run["rounds"][1]["central"] == {}  # NaN dropped
        assert run["error"] == "1 malformed round(s) skipped"
        assert run["charts"] == [  # a count like num-examples is not charted
            {"key": "loss", "title": "Loss", "y_label": "loss"},
            {"key": "accuracy", "title": "Accuracy", "y_label": "accuracy (0-1)"},
        ]
        metrics = http.get("/metrics").text
        assert 'orchard_devices{state="ready"} 2.0' in metrics
        assert 'orchard_health_messages_total{kind="health"} 9.0' in metrics
        page = http.get("/")
        assert page.status_code == 200 and "/static/app.js" in page.text
        assert http.get("/static/app.js").status_code == 200


def test_selection_through_the_service(service: HealthService, fleet: list[str]) -> None:
    sel = service.select([10, 11, 12, 99])
    assert sel.eligible == (10, 11, 12, 99) and 99 in sel.notes
    for round_ in (1, 2, 3):
        service.record_outcome(11, round_, ok=False)
    assert service.select([10, 11]).skipped == {
        11: "orchard-pi-b: 3 training failures in a row (max_failures_in_row 3)"
    }


def test_latest_run_is_read_defensively(service: HealthService) -> None:
    assert service.dashboard_url is not None
    newer = service.runs_dir / "run-8"
    newer.mkdir()
    (newer / "history.json").write_text('{"run_id": "run-8", "rounds": [')  # being written
    with httpx.Client(base_url=service.dashboard_url, timeout=10) as http:
        run = http.get("/api/runs/latest").json()
    assert run["run_id"] == "run-8" and run["rounds"] == []
    assert "unreadable" in run["error"]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_dashboard_shows_the_devices_in_headless_chromium(
    service: HealthService, fleet: list[str], tmp_path: Path
) -> None:
    assert CHROMIUM is not None and service.dashboard_url is not None
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        service.dashboard_url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    dom = out.stdout
    assert out.returncode == 0, out.stderr[-2000:]
    # Rows exist only after app.js fetched /api/fleet and built the table.
    for name in fleet:
        assert f'data-device="{name}"' in dom, dom[:3000]
    assert "3 device(s): 2 ready, 1 alert" in dom
    assert "model versions: v0 × 2, v1 × 1" in dom
    assert "<polyline" in dom  # sparklines and training curves are inline SVG
    assert "run run-7" in dom
    # Training charts: x is the round, y names the metric and its unit.
    assert dom.count('class="axis-label axis-x">round</text>') == 2
    assert 'class="axis-label axis-y">accuracy (0-1)</text>' in dom
    assert "num-examples" not in dom
    # The models view is there; this coordinator has no rollouts.
    assert '<div id="rollout"><p class="muted">no rollouts yet</p></div>' in dom
