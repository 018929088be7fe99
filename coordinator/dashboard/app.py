"""The coordinator's web dashboard: one static page plus JSON endpoints (FastAPI).

    GET /                               the page (static HTML + vanilla JS, inline SVG charts)
    GET /api/fleet                      every device's summary row, counts per state, models
    GET /api/sparklines?metric=&points= recent values of one health metric for every device
    GET /api/devices/{id}               one device: summary, birth, last health, recent events
    GET /api/devices/{id}/history       health points for charts (?since=<unix ts>&limit=)
    GET /api/runs/latest                the newest runs/<run-id>/history.json
    GET /api/models                     versions per device, the rollout, metrics per version
    GET /metrics                        Prometheus text format

Nothing to build and no CDN: the page works offline.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from coordinator.dashboard.models_api import models_document
from coordinator.dashboard.runs import latest_history
from coordinator.health.metrics import CONTENT_TYPE, HealthMetrics
from coordinator.health.registry import HISTORY_METRICS, Registry
from coordinator.rollout.store import RolloutStore

STATIC = Path(__file__).with_name("static")


def create_app(
    registry: Registry,
    runs_dir: Path | None = None,
    metrics: HealthMetrics | None = None,
    rollout: RolloutStore | None = None,
) -> FastAPI:
    app = FastAPI(title="Orchard coordinator", docs_url=None, redoc_url=None)
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/api/fleet")
    def fleet() -> dict[str, Any]:
        records = registry.devices()
        rows = [r.summary() for r in records]
        counts: dict[str, int] = {}
        models: dict[str, int] = {}
        for row in rows:
            counts[row["state"]] = counts.get(row["state"], 0) + 1
            version = row["model_version"] or "none"
            models[version] = models.get(version, 0) + 1
        return {"now": registry.clock(), "counts": counts, "models": models, "devices": rows}

    @app.get("/api/sparklines")
    def sparklines(
        metric: str = Query("cpu_temp_c"), points: int = Query(30, ge=2, le=500)
    ) -> dict[str, Any]:
        if metric not in HISTORY_METRICS:
            raise HTTPException(
                422, f"metric: expected one of {', '.join(HISTORY_METRICS)}. Received: {metric!r}"
            )
        return {"metric": metric, "series": registry.sparklines(metric, points)}

    @app.get("/api/devices/{device_id}")
    def device(device_id: str) -> dict[str, Any]:
        rec = registry.device(device_id)
        if rec is None:
            raise HTTPException(404, f"device_id: no device {device_id!r} has reported")
        return {
            "summary": rec.summary(),
            "birth": dataclasses.asdict(rec.birth) if rec.birth else None,
            "health": dataclasses.asdict(rec.health) if rec.health else None,
            "events": registry.events(device_id),
        }

    @app.get("/api/devices/{device_id}/history")
    def history(
        device_id: str, since: float | None = None, limit: int = Query(500, ge=1, le=10_000)
    ) -> dict[str, Any]:
        if registry.device(device_id) is None:
            raise HTTPException(404, f"device_id: no device {device_id!r} has reported")
        return {"device_id": device_id, "points": registry.history(device_id, since, limit)}

    @app.get("/api/runs/latest")
    def runs_latest() -> dict[str, Any]:
        return latest_history(runs_dir)

    @app.get("/api/models")
    def models() -> dict[str, Any]:
        return models_document(registry, rollout)

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        body = metrics.render() if metrics is not None else b""
        return Response(body, media_type=CONTENT_TYPE)

    return app
