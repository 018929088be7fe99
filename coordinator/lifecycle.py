"""The model lifecycle on the running coordinator: artifact server, desired states, rollouts.

Composes parts that do not know each other (so it sits above them, like
``health_service.py``): the catalog and artifact server (:mod:`coordinator.delivery`), the
desired-state publisher over the health ingest's MQTT connection, and the rollout controller
(:mod:`coordinator.rollout`) with its store, ticking on one thread::

    lifecycle = ModelLifecycle(config, health)   # health: a started HealthService
    lifecycle.start()              # serve artifacts, re-publish desired states, resume rollouts
    lifecycle.after_run(run_id, rounds)          # [rollout] after_run
    lifecycle.wait_settled(timeout)              # until the after-run rollout is decided
    lifecycle.stop()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from coordinator.config import CoordinatorSettings
from coordinator.dashboard.server import DashboardServer
from coordinator.delivery.catalog import Catalog
from coordinator.delivery.publisher import MqttPublisher
from coordinator.delivery.server import create_app
from coordinator.errors import CoordinatorError
from coordinator.health_service import HealthService
from coordinator.rollout.controller import RolloutController
from coordinator.rollout.store import RolloutStore

logger = logging.getLogger(__name__)


class ModelLifecycle:
    def __init__(
        self,
        config: CoordinatorSettings,
        health: HealthService,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.health = health
        self.clock = clock
        self.server: DashboardServer | None = None
        self.controller: RolloutController | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def store(self) -> RolloutStore | None:
        return self.health.rollout_store

    @property
    def url(self) -> str | None:
        return None if self.server is None else self.server.url

    def start(self) -> None:
        """Serve artifacts and resume rollouts; ``CoordinatorError`` when something cannot."""
        registry, ingest, store = self.health.registry, self.health.ingest, self.store
        if registry is None or ingest is None or store is None:
            raise CoordinatorError("ModelLifecycle.start() before HealthService.start()")
        d = self.config.delivery
        catalog = Catalog.from_settings(d, self.config.runs_dir)
        server = DashboardServer(
            create_app(catalog),
            d.host,
            d.port,
            name="delivery",
            tls_cert=d.tls_cert,
            tls_key=d.tls_key,
            tls_ca=d.tls_ca,
        )
        server.start()
        self.server = server
        publisher = MqttPublisher(ingest, self.config.health.mqtt.topic_prefix)
        self.controller = RolloutController(
            store, registry, catalog, publisher, self.config.rollout, clock=self.clock
        )
        republished = self.controller.resume()
        logger.info(
            "models served on %s (as %s); %d desired state(s) re-published",
            server.url,
            d.url,
            republished,
        )
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="orchard-rollout", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.config.rollout.tick_s):
            self.tick()

    def tick(self) -> None:
        if self.controller is None:
            return
        try:
            self.controller.tick()
        except CoordinatorError as exc:  # a refused request or a failed publish: next tick
            logger.warning("rollout tick: %s", exc)
        except Exception:  # never let the thread die: the coordinator keeps serving
            logger.exception("rollout tick failed")

    def after_run(self, run_id: str, last_round: int) -> str | None:
        """What ``[rollout] after_run`` says to do with the run's last model; the rollout id."""
        if self.controller is None:
            raise CoordinatorError("ModelLifecycle.after_run() before start()")
        return self.controller.after_run(run_id, last_round)

    def wait_settled(self, timeout: float, poll_s: float = 0.5) -> bool:
        """Until no rollout is active and every online device serves its desired version."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.settled():
                return True
            self._stop.wait(poll_s)
        return False

    def rollout_active(self) -> bool:
        return self.store is not None and self.store.active() is not None

    def settled(self) -> bool:
        if self.controller is None or self.store is None:
            return True
        if self.store.active() is not None:
            return False
        status = self.controller.status()
        return all(d.serving == d.desired for d in status.devices if d.online and d.desired)

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(10)
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.controller = None
