"""The two prediction endpoints, free of FastAPI: body or store in, a JSON ``Response`` out.

Every outcome is counted in ``orchard_predictions_total{endpoint,outcome}``. With a prediction
log (``agent.labels``), each served prediction gets an id (``prediction_id``, or
``prediction_ids`` for ``instances``) and is logged, and so is each one that failed in the
model; a refused request is neither (nothing here changes state on bad input).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from starlette.responses import Response

from agent.errors import AgentError
from agent.labels.log import PredictionLog
from agent.metrics import AgentMetrics
from agent.serve.inputs import RequestInputError, parse_body
from agent.serve.responses import error_response, json_response
from agent.serve.results import format_results
from agent.slots import ModelSlots
from agent.store.base import Store
from models.runtime import Predictor

logger = logging.getLogger(__name__)

NO_MODEL = "no model is loaded yet; the agent serves one once a trained model is installed"


class Predictions:
    def __init__(
        self,
        slots: ModelSlots,
        store: Store | None,
        metrics: AgentMetrics,
        log: PredictionLog | None = None,
    ) -> None:
        self._slots = slots
        self._store = store
        self._metrics = metrics
        self._log = log

    def from_body(self, body: bytes) -> Response:
        """``POST /api/predict``."""
        t0 = time.perf_counter()
        predictor = self._slots.current()
        if predictor is None:
            return self._fail("predict", "no_model", 503, NO_MODEL, "model")
        try:
            parsed = parse_body(body, predictor.manifest)
        except RequestInputError as exc:
            return self._fail("predict", "invalid", exc.status, exc.detail, exc.field)
        return self._run("predict", predictor, parsed.batch, parsed.single, t0)

    def from_store(self) -> Response:
        """``GET /api/predict/latest``: the newest row or window in the local store."""
        t0 = time.perf_counter()
        predictor = self._slots.current()
        if predictor is None:
            return self._fail("latest", "no_model", 503, NO_MODEL, "model")
        if self._store is None:
            return self._fail("latest", "no_data", 503, "no local store is configured", "store")
        spec = predictor.manifest.input
        if len(spec.shape) == 3:  # image_dir stores pixels px_0 .. px_{h*w-1}
            names = tuple(f"px_{i}" for i in range(spec.shape[0] * spec.shape[1]))
        else:
            names = spec.feature_names
        rows = spec.window or 1
        if not names:
            why = "the model's manifest names no input features, so the store cannot be read"
            return self._fail("latest", "no_data", 409, why, "model")
        try:
            found = self._store.latest_window_at(names, rows)
        except AgentError as exc:
            self._metrics.record_error("store")
            return self._fail("latest", "error", 503, f"the local store failed: {exc}", "store")
        if found is None:
            return self._fail("latest", "no_data", 409, self._not_enough(names, rows), "store")
        x, sample_ts = found
        batch = np.asarray(x, np.float32).reshape(1, *spec.shape)
        return self._run("latest", predictor, batch, True, t0, sample_ts)

    def _run(
        self,
        endpoint: str,
        predictor: Predictor,
        batch: np.ndarray,
        single: bool,
        t0: float,
        sample_ts: float | None = None,
    ) -> Response:
        t1 = time.perf_counter()
        version = predictor.manifest.version
        try:
            out = predictor.model.predict(batch)
        except (ValueError, RuntimeError) as exc:
            logger.exception("inference failed on %s", endpoint)
            self._metrics.record_error("inference")
            self._failed(version, len(batch), t0)
            return self._fail(endpoint, "error", 500, f"inference failed: {exc}", None)
        t2 = time.perf_counter()
        results = format_results(predictor.manifest, out)
        payload: dict[str, Any] = {
            "result": results[0] if single else results,
            "model_version": version,
            "timing": {
                "preprocess_ms": round((t1 - t0) * 1000.0, 4),
                "inference_ms": round((t2 - t1) * 1000.0, 4),
            },
        }
        log = self._log
        ids = None
        if log is not None:
            ids = log.ids(len(results))
            if single:
                payload["prediction_id"] = ids[0]
            else:
                payload["prediction_ids"] = ids
        try:
            response = json_response(payload)
        except ValueError:  # NaN or infinity in the output
            self._metrics.record_error("inference")
            self._failed(version, len(results), t0)
            why = "the model produced a non-finite output (NaN or infinity)"
            return self._fail(endpoint, "error", 500, why, None)
        if log is not None and ids is not None:
            log.record(ids, version, results, t2 - t0, sample_ts)
        self._metrics.observe_prediction(endpoint, "ok", t2 - t1)
        return response

    def _failed(self, version: str, n: int, t0: float) -> None:
        if self._log is not None:
            self._log.record_failure(version, n, time.perf_counter() - t0)

    def _not_enough(self, names: tuple[str, ...], rows: int) -> str:
        assert self._store is not None
        shown = ", ".join(names) if len(names) <= 16 else f"{len(names)} features {names[0]}.."
        what = f"{rows} recent rows" if rows > 1 else "a recent row"
        detail = f"expected {what} carrying every model feature ({shown}) in the local store"
        try:
            missing = [n for n in names if n not in self._store.features()]
            stored = self._store.stats().rows
        except AgentError:
            return f"{detail}. Received: none"
        if missing:
            listed = ", ".join(missing[:16]) + (" .." if len(missing) > 16 else "")
            return f"{detail}. Received: no values ever stored for {listed}"
        return (
            f"{detail}. Received: not enough complete recent rows ({stored} rows stored); "
            "wait for the sampler to collect more"
        )

    def _fail(
        self, endpoint: str, outcome: str, status: int, detail: str, field: str | None
    ) -> Response:
        self._metrics.observe_prediction(endpoint, outcome, None)
        return error_response(status, detail, field)
