"""The agent's Starlette app (docs/architecture.md, HTTP): health, model info, predictions, labels,
metrics.

Plain Starlette: no FastAPI and no pydantic in the always-on process (together ~17 MB of RSS
against a 75 MB budget). The handlers build their JSON by hand (``predict.py``,
``responses.py``); ``/openapi.json`` is a document generated from ``schemas.py`` at build time
and shipped with the package (``docs.py``, ``docgen.py``).

The documented routes answer their one method only; any other method on them, HEAD included,
is a 405 with an ``Allow`` header, and an unknown path a 404, both with the JSON error body.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from agent import metrics as agent_metrics
from agent.healthz import AgentState, Healthz, ModelRef
from agent.labels import LabelError, LabelService
from agent.labels.requests import label_schema
from agent.metrics import AgentMetrics
from agent.serve.guard import Guard
from agent.serve.lane import PredictLane
from agent.serve.predict import NO_MODEL, Predictions
from agent.serve.responses import error_response, json_response
from agent.serve.settings import HttpSettings
from agent.slots import ModelSlots, model_ref
from agent.store.base import Store
from models.manifest import Manifest
from models.runtime import backend

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Endpoint = Callable[[Request], Any]

STATIC = Path(__file__).with_name("static")


def create_app(
    *,
    slots: ModelSlots,
    store: Store | None,
    metrics: AgentMetrics,
    settings: HttpSettings,
    clock: Clock = time.monotonic,
    agent_state: Callable[[], AgentState] | None = None,
    labels: LabelService | None = None,
) -> Starlette:
    """Build the app. Binds ``metrics`` to the slots' model and the store's stats if unbound.

    With ``labels``, predictions are logged with ids and ``POST /api/labels`` takes labels;
    without, predictions carry no id and labels are refused (503).
    """
    started = clock()
    predictions = Predictions(slots, store, metrics, None if labels is None else labels.log)
    if not metrics.has_model_source:
        metrics.bind(model=lambda: _manifest(slots))
    if store is not None and not metrics.has_store_source:
        metrics.bind(store=store.stats)
    bearer = settings.token is not None

    # Sync handlers run in the thread pool (as they did under FastAPI): the store and the
    # metrics collectors block.
    def healthz(request: Request) -> Response:
        """Liveness and readiness; always 200 while the process serves. No token needed."""
        predictor = slots.current()
        state = None
        if agent_state is not None:
            try:
                state = agent_state()
            except Exception:
                logger.exception("the agent's /healthz state failed")
        model = None if predictor is None else ModelRef(**model_ref(predictor.manifest))
        uptime = round(clock() - started, 3)
        return JSONResponse(Healthz(predictor is not None, model, uptime, state).encode())

    def info(request: Request) -> Response:
        """The serving model's manifest essentials and the LiteRT runtime serving it."""
        predictor = slots.current()
        if predictor is None:
            return error_response(503, NO_MODEL, "model")
        return JSONResponse(_info(predictor.manifest, predictor.path.name))

    async def predict(request: Request) -> Response:
        """Predict one sample (``features``), a batch (``instances``) or named ``readings``."""
        # PredictLane answers every POST before routing; this keeps the route in the table.
        return predictions.from_body(await request.body())

    def predict_latest(request: Request) -> Response:
        """Predict on the newest row (or window) of the model's features in the local store."""
        return predictions.from_store()

    async def add_labels(request: Request) -> Response:
        """Label served predictions (``prediction_id``) or stored readings (``timestamp``), one
        or a batch (``labels``, all or none); checked against the serving model's classes or
        value range, rate limited (``[labels] max_per_minute``)."""
        if labels is None:
            return error_response(503, "labels: this agent takes no labels", "labels")
        body = await request.body()
        try:
            done = await run_in_threadpool(labels.submit, body)
        except LabelError as exc:
            headers = None
            if exc.retry_after_s is not None:
                headers = {"Retry-After": str(exc.retry_after_s)}
            return error_response(exc.status, exc.detail, exc.field, headers)
        return json_response({"accepted": len(done), "results": [d.to_json() for d in done]})

    def prometheus(request: Request) -> Response:
        """Prometheus text format."""
        return Response(metrics.render(), media_type=agent_metrics.CONTENT_TYPE)

    def openapi(request: Request) -> Response:
        from agent.serve import docs  # json only; loaded on the first request for it

        manifest = _manifest(slots)
        spec = None if manifest is None else manifest.input
        fit = None
        if manifest is not None and labels is not None:
            fit = docs.label_fit(label_schema(manifest), labels.max_batch)
        return JSONResponse(docs.openapi(app, bearer=bearer, spec=spec, labels=fit))

    def swagger_ui(request: Request) -> Response:
        return HTMLResponse(_page("docs.html"))

    def oauth2_redirect(request: Request) -> Response:
        return HTMLResponse(_page("oauth2-redirect.html"))

    app = Starlette(
        routes=[
            _api_route("/healthz", healthz, "GET"),
            _api_route("/api/info", info, "GET"),
            _api_route("/api/predict", predict, "POST"),
            _api_route("/api/predict/latest", predict_latest, "GET"),
            _api_route("/api/labels", add_labels, "POST"),
            _api_route("/metrics", prometheus, "GET"),
            # Undocumented helpers answer GET and HEAD, as FastAPI's did.
            Route("/openapi.json", openapi, include_in_schema=False),
            Route("/docs", swagger_ui, include_in_schema=False),
            Route("/docs/oauth2-redirect", oauth2_redirect, include_in_schema=False),
        ],
        # The first is the outermost: the token and body limit apply to the fast lane too.
        middleware=[
            Middleware(Guard, token=settings.token, max_body_bytes=settings.max_body_bytes),
            Middleware(PredictLane, predictions=predictions),
        ],
        exception_handlers={HTTPException: _http_error},
    )
    return app


def _api_route(path: str, endpoint: Endpoint, method: str) -> Route:
    """A documented route answering exactly ``method`` (Starlette would add HEAD to GET)."""
    route = Route(path, endpoint, methods=[method])
    route.methods = {method}
    return route


@functools.cache
def _page(name: str) -> bytes:
    """A static page shipped in ``agent/serve/static`` (Swagger UI, from its CDN)."""
    return STATIC.joinpath(name).read_bytes()


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


async def _http_error(request: Request, exc: Exception) -> Response:
    """404, 405 (with ``Allow``) and any other ``HTTPException`` as the JSON error body."""
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), None, exc.headers)
