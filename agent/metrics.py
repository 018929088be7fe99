"""Prometheus metrics of the agent, in a private registry (``render()`` for ``GET /metrics``).

Counters and the latency histogram are pushed by the inference server; sensor, store and model
figures are read from callables at scrape time (``bind``), or from the last ``update_sensors``.

    orchard_predictions_total{endpoint,outcome}       ok | invalid | no_model | no_data | error
    orchard_inference_seconds                         histogram, 10 us .. 50 ms buckets
    orchard_errors_total{kind}
    orchard_model_events_total{event}                 model_swapped, model_rejected, rollback...
    orchard_model_loaded                              1 when a model serves
    orchard_model_info{name,version,sha256,quantization,task}   1 for the serving model
    orchard_sensor_readings_accepted_total{sensor}
    orchard_sensor_readings_rejected_total{sensor,reason}
    orchard_sensor_errors_total{sensor}
    orchard_sensor_up{sensor,state}                   1 when the sensor's state is ok
    orchard_store_rows, orchard_store_bytes
    process_*                                         RSS, CPU, fds (Linux)
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from agent.health.schema import Inference

if TYPE_CHECKING:
    from agent.sensors.status import SensorStatus
    from agent.store.base import StoreStats
    from models.manifest import Manifest

logger = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS_S = (
    1e-5,
    2.5e-5,
    5e-5,
    1e-4,
    2.5e-4,
    5e-4,
    1e-3,
    2.5e-3,
    5e-3,
    1e-2,
    2.5e-2,
    5e-2,
)
RECENT = 1024  # inference times kept for health's p50/p95

ModelSource = Callable[[], "Manifest | None"]
SensorSource = Callable[[], "Mapping[str, SensorStatus]"]
StoreSource = Callable[[], "StoreStats | None"]


class AgentMetrics:
    """Owns the registry; every method is thread-safe and cheap enough for the hot path."""

    def __init__(
        self,
        *,
        model: ModelSource | None = None,
        sensors: SensorSource | None = None,
        store: StoreSource | None = None,
        process: bool = True,
    ) -> None:
        self.registry = CollectorRegistry()
        self._predictions = Counter(
            "orchard_predictions",
            "Prediction requests by endpoint and outcome.",
            ("endpoint", "outcome"),
            registry=self.registry,
        )
        self._latency = Histogram(
            "orchard_inference_seconds",
            "Time spent in the interpreter per prediction request.",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self._errors = Counter(
            "orchard_errors", "Errors by kind.", ("kind",), registry=self.registry
        )
        self._model_events = Counter(
            "orchard_model_events", "Model slot events.", ("event",), registry=self.registry
        )
        self._model = model
        self._sensors = sensors
        self._store = store
        self._sensor_snapshot: Mapping[str, SensorStatus] = {}
        self._recent: deque[float] = deque(maxlen=RECENT)
        self._count = 0
        self._error_count = 0
        self._lock = threading.Lock()
        self.registry.register(_SnapshotCollector(self))
        if process:
            ProcessCollector(registry=self.registry)

    # -- sources read at scrape time -----------------------------------------------------------

    def bind(
        self,
        *,
        model: ModelSource | None = None,
        sensors: SensorSource | None = None,
        store: StoreSource | None = None,
    ) -> None:
        """Set the callables read at scrape time (those given; the others stay)."""
        self._model = model or self._model
        self._sensors = sensors or self._sensors
        self._store = store or self._store

    @property
    def has_model_source(self) -> bool:
        return self._model is not None

    @property
    def has_store_source(self) -> bool:
        return self._store is not None

    def update_sensors(self, status: Mapping[str, SensorStatus]) -> None:
        """Push a sampler status snapshot (used when no ``sensors`` callable is bound)."""
        self._sensor_snapshot = dict(status)

    # -- pushed by the server ------------------------------------------------------------------

    def observe_prediction(self, endpoint: str, outcome: str, inference_s: float | None) -> None:
        self._predictions.labels(endpoint, outcome).inc()
        if inference_s is not None:
            self._latency.observe(inference_s)
            with self._lock:
                self._count += 1
                self._recent.append(inference_s * 1000.0)

    def record_error(self, kind: str) -> None:
        self._errors.labels(kind).inc()
        with self._lock:
            self._error_count += 1

    def record_model_event(self, event: str, payload: Mapping[str, Any] | None = None) -> None:
        """Count a :class:`agent.slots.ModelSlots` event (fits its ``on_event`` signature)."""
        self._model_events.labels(event).inc()

    def inference_stats(self) -> Inference:
        """Count, errors and p50/p95 latency over the last predictions, for health."""
        with self._lock:
            recent = np.fromiter(self._recent, np.float64, len(self._recent))
            count, errors = self._count, self._error_count
        p50 = p95 = None
        if recent.size:
            p50, p95 = (round(float(v), 4) for v in np.percentile(recent, [50, 95]))
        return Inference(count=count, p50_ms=p50, p95_ms=p95, errors=errors)

    def render(self) -> bytes:
        """The registry in Prometheus text format (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)


class _SnapshotCollector:
    """Reads the model, sensor and store sources at scrape time; a failing source is skipped."""

    def __init__(self, owner: AgentMetrics) -> None:
        self._owner = owner

    def collect(self) -> Iterator[Metric]:
        for part in (self._model, self._sensors, self._store):
            try:
                yield from part()
            except Exception:
                logger.exception("metrics source %s failed", part.__name__)

    def _model(self) -> Iterator[Metric]:
        source = self._owner._model
        if source is None:
            return
        manifest = source()
        loaded = GaugeMetricFamily("orchard_model_loaded", "1 when a model is serving.")
        loaded.add_metric([], 0.0 if manifest is None else 1.0)
        yield loaded
        info = GaugeMetricFamily(
            "orchard_model_info",
            "The serving model (value 1).",
            labels=("name", "version", "sha256", "quantization", "task"),
        )
        if manifest is not None:
            labels = [manifest.name, manifest.version, manifest.sha256, manifest.quantization]
            info.add_metric([*labels, manifest.task.value], 1.0)
        yield info

    def _sensors(self) -> Iterator[Metric]:
        source = self._owner._sensors
        status = source() if source is not None else self._owner._sensor_snapshot
        accepted = CounterMetricFamily(
            "orchard_sensor_readings_accepted", "Readings accepted per sensor.", labels=("sensor",)
        )
        rejected = CounterMetricFamily(
            "orchard_sensor_readings_rejected",
            "Readings rejected per sensor and reason.",
            labels=("sensor", "reason"),
        )
        errors = CounterMetricFamily(
            "orchard_sensor_errors", "Driver read errors per sensor.", labels=("sensor",)
        )
        up = GaugeMetricFamily(
            "orchard_sensor_up", "1 when the sensor reads fine.", labels=("sensor", "state")
        )
        for name, s in sorted(status.items()):
            accepted.add_metric([name], float(s.accepted))
            for reason, n in sorted(s.rejected.items()):
                rejected.add_metric([name, reason], float(n))
            errors.add_metric([name], float(s.errors))
            up.add_metric([name, str(s.state)], 1.0 if s.state == "ok" else 0.0)
        yield from (accepted, rejected, errors, up)

    def _store(self) -> Iterator[Metric]:
        source = self._owner._store
        stats = source() if source is not None else None
        if stats is None:
            return
        rows = GaugeMetricFamily("orchard_store_rows", "Rows in the local store.")
        rows.add_metric([], float(stats.rows))
        size = GaugeMetricFamily("orchard_store_bytes", "Size of the local store in bytes.")
        size.add_metric([], float(stats.bytes))
        yield from (rows, size)
