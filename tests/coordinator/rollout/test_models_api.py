"""``GET /api/models`` from the dashboard app served over real HTTP: shape and content."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from coordinator.dashboard.app import create_app
from coordinator.dashboard.server import DashboardServer
from coordinator.health.registry import Registry
from coordinator.rollout.store import RolloutStore
from tests.fakes import FakeClock

from .helpers import Rig
from .test_controller import DEVICES, V1, V2, on_v1

ROLLOUT = {
    "id", "run_id", "round", "version", "previous", "stage", "started", "soak_s", "soak_ends",
    "min_labels", "canary", "control", "decision", "comparison",
}  # fmt: skip
GROUP = {
    "devices", "reporting", "predictions", "errors", "error_rate", "p99_ms", "mean_confidence",
    "labelled", "accuracy", "mae",
}  # fmt: skip
DEVICE = {"device_id", "online", "serving", "desired", "delivery", "delivery_error", "group"}
VERSION = {
    "version", "devices", "predictions", "errors", "p50_ms", "p99_ms", "mean_confidence",
    "drift_psi", "labelled", "accuracy", "mae",
}  # fmt: skip
HISTORY = {"id", "version", "previous", "stage", "decision", "started", "finished"}


def get_models(registry: Registry, store: RolloutStore | None = None) -> dict[str, Any]:
    server = DashboardServer(create_app(registry, rollout=store), port=0)
    server.start()
    try:
        response = httpx.get(server.url + "api/models", timeout=10)
    finally:
        server.stop()
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    return doc


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig.make(tmp_path, FakeClock())
    on_v1(r)
    yield r
    r.close()


def test_the_models_document_during_a_rollback(rig: Rig) -> None:
    rig.controller.start("run-2", 5, devices=["pi-1"])
    rig.fleet.follow(rig.publisher)
    rig.fleet.metrics("pi-1", V2, predictions=80, labelled=40, accuracy=0.5, p50_ms=0.4,
                      p99_ms=2.0, mean_confidence=0.7, drift_psi=0.1)  # fmt: skip
    for device_id in DEVICES[1:]:
        rig.fleet.metrics(device_id, V1, predictions=100, errors=1, labelled=40, accuracy=0.9,
                          p99_ms=1.0)  # fmt: skip
    rig.clock.advance(60)
    rig.fleet.report()
    rig.controller.tick()  # accuracy 0.50 vs 0.90: rolled back

    doc = get_models(rig.registry, rig.store)
    assert set(doc) == {"rollout", "devices", "versions", "history"}
    r = doc["rollout"]
    assert set(r) == ROLLOUT and set(r["comparison"]) == {"canary", "control"}
    assert (r["id"], r["version"], r["previous"], r["stage"]) == ("r-2", V2, V1, "rolling_back")
    assert (r["run_id"], r["round"], r["canary"]) == ("run-2", 5, ["pi-1"])
    assert r["soak_ends"] == r["started"] + 600 and r["min_labels"] == 30
    assert set(r["decision"]) == {"outcome", "reason", "at", "by"}
    assert (r["decision"]["outcome"], r["decision"]["by"]) == ("rollback", "auto")
    assert r["decision"]["reason"].startswith("canary accuracy 0.50 on 40 labels vs control 0.90")
    canary, control = r["comparison"]["canary"], r["comparison"]["control"]
    assert set(canary) == GROUP == set(control)
    assert (canary["devices"], canary["labelled"], canary["accuracy"]) == (1, 40, 0.5)
    assert (control["devices"], control["predictions"], control["errors"]) == (4, 400, 4)
    assert control["error_rate"] == round(4 / 404, 4)

    assert all(set(d) == DEVICE for d in doc["devices"])
    pi1 = doc["devices"][0]
    assert pi1 == {"device_id": "pi-1", "online": True, "serving": V2, "desired": V1,
                   "delivery": "installed", "delivery_error": None, "group": "canary"}  # fmt: skip
    assert [d["group"] for d in doc["devices"][1:]] == ["control"] * 4

    assert all(set(v) == VERSION for v in doc["versions"])
    by_version = {v["version"]: v for v in doc["versions"]}
    assert by_version[V2]["devices"] == 1 and by_version[V2]["drift_psi"] == 0.1
    assert by_version[V1]["devices"] == 4 and by_version[V1]["accuracy"] == 0.9

    assert all(set(h) == HISTORY for h in doc["history"])
    assert [(h["id"], h["stage"]) for h in doc["history"]] == [
        ("r-2", "rolling_back"), ("r-1", "promoted"),
    ]  # fmt: skip
    assert doc["history"][1]["decision"]["reason"] == (
        f"delivered {V1} to every device (5), no canary"
    )


def test_without_a_rollout_store_the_document_still_has_its_shape(rig: Rig) -> None:
    doc = get_models(rig.registry)
    assert doc["rollout"] is None and doc["history"] == []
    assert [d["desired"] for d in doc["devices"]] == [None] * 5
    assert [d["serving"] for d in doc["devices"]] == [V1] * 5
