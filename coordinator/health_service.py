"""One object for the coordinator's health side: broker (if embedded), ingest, registry, dashboard.

``orchard-coordinator run`` and ``demo`` do::

    service = HealthService(FleetHealthSettings.from_mapping(doc), runs_dir=Path("runs"))
    service.start()                  # agents publish to service.mqtt_host:service.mqtt_port
    print(service.dashboard_url)
    selection = service.select(node_ids)   # in the ServerApp, each round
    ...
    service.stop()
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from coordinator.broker import EmbeddedBroker
from coordinator.errors import CoordinatorError
from coordinator.health.ingest import HealthIngest
from coordinator.health.metrics import HealthMetrics
from coordinator.health.registry import Clock, Registry
from coordinator.health.selection import Selection
from coordinator.health.settings import FleetHealthSettings

if TYPE_CHECKING:
    from coordinator.dashboard.server import DashboardServer
    from coordinator.rollout.settings import RolloutSettings
    from coordinator.rollout.store import RolloutStore

logger = logging.getLogger(__name__)


class HealthService:
    def __init__(
        self,
        settings: FleetHealthSettings | None = None,
        *,
        runs_dir: Path | str = Path("runs"),
        clock: Clock = time.time,
        subscribe_timeout_s: float = 10.0,
        rollout: RolloutSettings | None = None,
    ) -> None:
        self.settings = settings or FleetHealthSettings()
        self.rollout = rollout  # set: open the rollout store too (the dashboard's models view)
        self.rollout_store: RolloutStore | None = None
        self.runs_dir = Path(runs_dir)
        self.clock = clock
        self.subscribe_timeout_s = subscribe_timeout_s
        self.metrics = HealthMetrics()
        self.broker: EmbeddedBroker | None = None
        self.registry: Registry | None = None
        self.ingest: HealthIngest | None = None
        self._dashboard: DashboardServer | None = None
        self.dashboard_url: str | None = None

    @property
    def mqtt_host(self) -> str:
        m = self.settings.mqtt
        return m.host if m.host is not None else m.embedded_host

    @property
    def mqtt_port(self) -> int:
        return self.broker.port if self.broker is not None else self.settings.mqtt.port

    def start(self) -> None:
        """Start everything; on any failure, stop what started and raise ``CoordinatorError``."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        s = self.settings
        if s.mqtt.embedded:
            self.broker = EmbeddedBroker(s.mqtt.embedded_host, s.mqtt.port)
            self.broker.start()
            logger.info(
                "no [mqtt] host configured: embedded broker on %s:%d",
                self.mqtt_host,
                self.mqtt_port,
            )
        r = s.registry
        self.registry = Registry(
            r.resolve_path(self.runs_dir),
            clock=self.clock,
            stale_after_intervals=r.stale_after_intervals,
            default_interval_s=r.default_interval_s,
            retention_s=r.history_retention_h * 3600.0,
        )
        self.metrics.watch_devices(self.registry.counts)
        if self.rollout is not None:
            from coordinator.rollout.store import RolloutStore

            self.rollout_store = RolloutStore(
                self.rollout.resolve_path(self.registry.path), clock=self.clock
            )
        self.ingest = HealthIngest(
            s.mqtt, self.mqtt_host, self.mqtt_port, self.registry, self.metrics, clock=self.clock
        )
        self.ingest.start()
        if not self.ingest.wait_subscribed(self.subscribe_timeout_s):
            logger.warning(
                "MQTT broker %s:%d not reachable yet; the ingest keeps retrying",
                self.mqtt_host,
                self.mqtt_port,
            )
        if s.dashboard.enabled:
            from coordinator.dashboard.app import create_app
            from coordinator.dashboard.server import DashboardServer

            server = DashboardServer(
                create_app(self.registry, self.runs_dir, self.metrics, self.rollout_store),
                s.dashboard.host,
                s.dashboard.port,
            )
            server.start()
            self._dashboard = server
            self.dashboard_url = server.url

    def select(self, node_ids: Iterable[int]) -> Selection:
        """The configured selection policy over the registry (see ``[selection]``)."""
        if self.registry is None:
            raise CoordinatorError("HealthService.select() before start()")
        return self.settings.selection.select(self.registry, node_ids)

    def record_outcome(self, node_id: int, round_: int, ok: bool, outcome: str = "") -> None:
        """Record a node's training result for a round (drives ``max_failures_in_row``)."""
        if self.registry is None:
            raise CoordinatorError("HealthService.record_outcome() before start()")
        self.registry.record_node_outcome(node_id, round_, ok, outcome)

    def stop(self) -> None:
        if self._dashboard is not None:
            self._dashboard.stop()
        self._dashboard = self.dashboard_url = None
        if self.ingest is not None:
            self.ingest.stop()
            self.ingest = None
        if self.rollout_store is not None:
            self.rollout_store.close()
            self.rollout_store = None
        if self.registry is not None:
            self.registry.close()
            self.registry = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def __enter__(self) -> HealthService:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
