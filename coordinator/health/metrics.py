"""Prometheus metrics for the coordinator's health side (served at ``/metrics``).

orchard_devices{state}                        devices per effective state (at scrape time)
orchard_health_messages_total{kind}           valid messages ingested
orchard_health_invalid_messages_total{kind}   refused messages (bad topic, JSON or schema)
orchard_health_ingest_latency_seconds         device timestamp -> stored in the registry
orchard_health_broker_connected               1 while the ingest is subscribed
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from coordinator.health.records import STATES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _DeviceStates(Collector):
    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("orchard_devices", "Devices per state.", labels=["state"])
        counts = self._counts()
        for state in STATES:
            family.add_metric([state], counts.get(state, 0))
        yield family


class HealthMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.ingested = Counter(
            "orchard_health_messages",
            "Valid health messages ingested.",
            ["kind"],
            registry=self.registry,
        )
        self.invalid = Counter(
            "orchard_health_invalid_messages",
            "Health messages refused.",
            ["kind"],
            registry=self.registry,
        )
        self.dropped = Counter(
            "orchard_health_dropped_messages",
            "Messages dropped: the ingest queue was full.",
            registry=self.registry,
        )
        self.latency = Histogram(
            "orchard_health_ingest_latency_seconds",
            "From the device's timestamp to the registry write.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.connected = Gauge(
            "orchard_health_broker_connected",
            "1 while subscribed to the broker.",
            registry=self.registry,
        )
        self._states: _DeviceStates | None = None

    def watch_devices(self, counts: Callable[[], dict[str, int]]) -> None:
        """Report ``orchard_devices{state}`` from ``counts()`` at each scrape."""
        if self._states is not None:
            self.registry.unregister(self._states)
        self._states = _DeviceStates(counts)
        self.registry.register(self._states)

    def count(self, name: str, kind: str) -> float:
        """Current value of ``ingested`` or ``invalid`` for ``kind`` (0 when never seen)."""
        metric = {
            "ingested": "orchard_health_messages_total",
            "invalid": "orchard_health_invalid_messages_total",
        }[name]
        return self.registry.get_sample_value(metric, {"kind": kind}) or 0.0

    def render(self) -> bytes:
        return generate_latest(self.registry)
