"""The agent's FastAPI app (DESIGN §3.1): health, model info, predictions, metrics."""

from __future__ import annotations

import importlib.metadata
import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from agent import metrics as agent_metrics
from agent.metrics import AgentMetrics
from agent.serve.guard import Guard
from agent.serve.lane import PredictLane
from agent.serve.predict import NO_MODEL, Predictions
from agent.serve.responses import error_response
from agent.serve.settings import HttpSettings
from agent.slots import ModelSlots, model_ref
from agent.store.base import Store
from models.manifest import Manifest
from models.runtime import backend

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


def create_app(
    *,
    slots: ModelSlots,
    store: Store | None,
    metrics: AgentMetrics,
    settings: HttpSettings,
    clock: Clock = time.monotonic,
    health_extra: Callable[[], dict[str, Any]] | None = None,
) -> FastAPI:
    """Build the app. Binds ``metrics`` to the slots' model and the store's stats if unbound."""
    started = clock()
    predictions = Predictions(slots, store, metrics)
    if not metrics.has_model_source:
        metrics.bind(model=lambda: _manifest(slots))
    if store is not None and not metrics.has_store_source:
        metrics.bind(store=store.stats)

    app = FastAPI(
        title="Orchard agent",
        version=_version(),
        description="Local predictions from the board's serving model (LiteRT).",
        redoc_url=None,
    )
    app.add_middleware(PredictLane, predictions=predictions)
    app.add_middleware(Guard, token=settings.token, max_body_bytes=settings.max_body_bytes)
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    bearer = settings.token is not None
    app.openapi = lambda: _openapi(app, bearer=bearer, slots=slots)  # type: ignore[method-assign]

    # Routes carry no response models: the handlers build their JSON by hand, and the models
    # that document them are attached on the first GET /openapi.json (docs.py).
    @app.get("/healthz", response_model=None, tags=["health"])
    def healthz() -> dict[str, Any]:
        """Liveness and readiness; always 200 while the process serves. No token needed."""
        predictor = slots.current()
        body: dict[str, Any] = {
            "status": "ok",
            "ready": predictor is not None,
            "model_loaded": predictor is not None,
            "model": None if predictor is None else model_ref(predictor.manifest),
            "uptime_s": round(clock() - started, 3),
        }
        if health_extra is not None:
            try:
                body.update(health_extra())
            except Exception:
                logger.exception("health_extra failed")
        return body

    @app.get("/api/info", response_model=None, tags=["model"])
    def info() -> Any:
        """The serving model's manifest essentials and the LiteRT runtime serving it."""
        predictor = slots.current()
        if predictor is None:
            return error_response(503, NO_MODEL, "model")
        return _info(predictor.manifest, predictor.path.name)

    @app.post("/api/predict", response_model=None, tags=["predict"])
    async def predict(request: Request) -> Response:
        """Predict one sample (``features``), a batch (``instances``) or named ``readings``."""
        return predictions.from_body(await request.body())

    @app.get("/api/predict/latest", response_model=None, tags=["predict"])
    def predict_latest() -> Response:
        """Predict on the newest row (or window) of the model's features in the local store."""
        return predictions.from_store()

    @app.get("/metrics", response_class=Response, tags=["health"])
    def prometheus() -> Response:
        """Prometheus text format."""
        return Response(metrics.render(), media_type=agent_metrics.CONTENT_TYPE)

    return app


def _manifest(slots: ModelSlots) -> Manifest | None:
    predictor = slots.current()
    return None if predictor is None else predictor.manifest


def _info(manifest: Manifest, slot: str | None) -> dict[str, Any]:
    rt = backend()
    spec = manifest.input
    return {
        "name": manifest.name,
        "version": manifest.version,
        "task": manifest.task.value,
        "family": manifest.family,
        "input": {
            "shape": list(spec.shape),
            "feature_names": list(spec.feature_names),
            "units": list(spec.units),
            "window": spec.window,
            "dtype": spec.dtype,
        },
        "output": {
            "labels": list(manifest.labels),
            "names": list(manifest.outputs),
            "threshold": manifest.threshold,
        },
        "quantization": manifest.quantization,
        "sha256": manifest.sha256,
        "size_bytes": manifest.size_bytes,
        "metrics": dict(manifest.metrics),
        "created": manifest.created,
        "runtime": {"name": rt.name, "version": rt.version},
        "slot": slot,
    }


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return error_response(exc.status_code, str(exc.detail), None, exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    first = exc.errors()[0] if exc.errors() else {}
    field = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    return error_response(422, f"{field}: {first.get('msg', 'invalid input')}", field)


def _openapi(app: FastAPI, *, bearer: bool, slots: ModelSlots) -> dict[str, Any]:
    from agent.serve import docs  # the pydantic models load on the first /openapi.json

    manifest = _manifest(slots)
    return docs.openapi(app, bearer=bearer, spec=None if manifest is None else manifest.input)


def _version() -> str:
    try:
        return importlib.metadata.version("orchard-fl")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"
