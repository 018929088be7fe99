"""What the trainer does for one request: fit a round, or evaluate the global model.

Evaluating never installs a model: models reach the agent only as the coordinator's desired
state (:mod:`agent.delivery`). With ``personalize`` the evaluation also fine-tunes the head
locally and reports how the personalised model would do (``personal_*``).

Imports Keras (through ``models.training``): only the trainer process loads
this module. Models are cached per spec, so a warm trainer reuses its compiled graph round
after round.
"""

from __future__ import annotations

import json
import logging
import resource
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.federation import status
from agent.federation.messages import ErrorCode, check_metrics
from agent.federation.trainer_api import TrainerMessageError, TrainerReply, TrainerRequest
from agent.store.base import Store
from agent.trainer.data import LocalData, NoDataError, load
from models import families
from models.errors import ModelError, SpecError
from models.spec import ModelSpec
from models.training import TrainSettings, evaluate, fit, metric_name, set_weights

logger = logging.getLogger(__name__)

Reply = tuple[dict[str, Any], list[np.ndarray]]


class JobError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Jobs:
    def __init__(
        self,
        store: Store,
        status_path: Path,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.status_path = status_path
        self.clock = clock
        self._models: dict[str, Any] = {}

    def handle(self, header: dict[str, Any], arrays: list[np.ndarray]) -> Reply:
        try:
            request = TrainerRequest.decode(header)
        except TrainerMessageError as exc:
            raise JobError(ErrorCode.BAD_REQUEST, str(exc)) from exc
        if request.op == "ping":
            return TrainerReply(ok=True, pid_rss_mb=peak_rss_mb()).encode(), []
        try:
            spec = ModelSpec.from_dict(dict(request.spec or {}))
        except (KeyError, TypeError, ValueError, ModelError) as exc:
            raise JobError(ErrorCode.BAD_REQUEST, f"spec: {exc}") from exc
        op = request.op
        state = "training" if op == "fit" else "evaluating"
        status.update(
            self.status_path,
            state=state,
            round=request.round,
            run_id=request.run_id,
            request_started=self.clock(),
        )
        started = time.perf_counter()
        try:
            model = self._model(spec)
            try:
                set_weights(model, arrays)
            except SpecError as exc:
                raise JobError(ErrorCode.BAD_REQUEST, f"arrays: {exc}") from exc
            try:
                data = load(self.store, spec)
            except NoDataError as exc:
                raise JobError(ErrorCode.NO_DATA, str(exc)) from exc
            if op == "fit":
                reply = self._fit(model, spec, data, request, arrays)
            else:
                reply = self._evaluate(model, spec, data, request, arrays)
        except JobError as exc:
            status.update(
                self.status_path,
                state="idle",
                last_outcome="error",
                last_reason=str(exc),
                request_started=None,
            )
            raise
        duration = time.perf_counter() - started
        status.update(
            self.status_path,
            state="idle",
            last_outcome="ok",
            last_reason=None,
            last_duration_s=round(duration, 3),
            peak_rss_mb=round(peak_rss_mb(), 1),
            request_started=None,
        )
        return reply

    def _model(self, spec: ModelSpec) -> Any:
        key = json.dumps(spec.to_dict(), sort_keys=True)
        if key not in self._models:
            self._models.clear()
            self._models[key] = families.build(spec)
        return self._models[key]

    def _fit(
        self,
        model: Any,
        spec: ModelSpec,
        data: LocalData,
        request: TrainerRequest,
        global_weights: Sequence[np.ndarray],
    ) -> Reply:
        train = request.train
        try:
            config = TrainSettings(
                epochs=train.epochs,
                batch_size=train.batch_size,
                learning_rate=train.learning_rate,
                mu=train.mu,
                seed=request.round,
            )
            result = fit(
                model,
                spec,
                (data.x_train, data.y_train),
                config,
                global_weights=global_weights if config.mu > 0 else None,
                validation=(data.x_val, data.y_val),
            )
        except SpecError as exc:
            raise JobError(ErrorCode.BAD_REQUEST, str(exc)) from exc
        name = metric_name(spec.task)
        m = result.metrics
        metrics = check_metrics(
            "train",
            {
                "num-examples": data.examples,
                "loss": m["loss"],
                "metric": m[name] if name else m["loss"],
                "val_loss": m["val_loss"],
                "val_metric": m[f"val_{name}"] if name else m["val_loss"],
                "duration_s": m["duration_s"],
                "peak_rss_mb": peak_rss_mb(),
            },
        )
        weights = [np.asarray(w, np.float32) for w in result.weights]
        return TrainerReply(ok=True, metrics=metrics).encode(), weights

    def _evaluate(
        self,
        model: Any,
        spec: ModelSpec,
        data: LocalData,
        request: TrainerRequest,
        global_weights: Sequence[np.ndarray],
    ) -> Reply:
        name = metric_name(spec.task)
        val = (data.x_val, data.y_val)
        glob = evaluate(model, spec, val)
        served = glob
        personalized = 0.0
        if request.personalize:
            personal = families.build(spec)
            set_weights(personal, global_weights)
            train = request.train
            fit(
                personal,
                spec,
                (data.x_train, data.y_train),
                TrainSettings(
                    epochs=train.epochs,
                    batch_size=train.batch_size,
                    learning_rate=train.learning_rate,
                    freeze_base=True,
                    seed=request.round,
                ),
            )
            own = evaluate(personal, spec, val)
            if _better(spec, own, glob, name):
                served, personalized = own, 1.0
        metrics = check_metrics(
            "evaluate",
            {
                "num-examples": len(data.x_val),
                "loss": glob["loss"],
                "metric": glob[name] if name else glob["loss"],
                "personal_loss": served["loss"],
                "personal_metric": served[name] if name else served["loss"],
                "personalized": personalized,
            },
        )
        return TrainerReply(ok=True, metrics=metrics).encode(), []


def _better(
    spec: ModelSpec, own: dict[str, float], glob: dict[str, float], name: str | None
) -> bool:
    if name == "accuracy":
        return own["accuracy"] > glob["accuracy"]
    if name == "mae":
        return own["mae"] < glob["mae"]
    return own["loss"] < glob["loss"]
