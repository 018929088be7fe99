"""``orchard-agent run``: wire sensors, store, model slots and the HTTP server; supervise.

Threads: the sampler (its own thread and read workers), uvicorn (one thread), and the main
loop here, which installs models dropped into ``<models.dir>/inbox/`` and pings systemd's
watchdog only when the other parts are alive and the loop itself is turning.

A trainer hands over a model by writing a complete bundle to ``inbox/.NAME.tmp`` and renaming
it to ``inbox/NAME``; the agent verifies it in the inactive slot and swaps atomically, or moves
it to ``rejected/`` and keeps serving the old model.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import cpus, exit_codes, handover
from agent.config import AgentSettings
from agent.errors import AgentError, ModelSlotError
from agent.health.schema import Ack, BirthParts, HealthParts, ModelInfo
from agent.health_sections import birth_facts, health_sections
from agent.healthz import DISABLED, AgentState, MqttLink
from agent.labels import LabelService
from agent.labels.service import open_log
from agent.metrics import AgentMetrics
from agent.remote.live import LiveParts
from agent.sensors import Sampler, SensorState, build_sensors
from agent.serve import create_app
from agent.serve.server import HttpServer
from agent.slots import ACTIVE_FILE, ModelSlots
from agent.store import open_store
from agent.systemd import Notifier, inherited_fds
from agent.types import Sample
from models.manifest import write_atomic

if TYPE_CHECKING:  # imported where they are built, after the HTTP server is up (a restart's
    # downtime is the time to serve again: on a board, every import before it counts)
    from agent.delivery.service import DeliveryService
    from agent.federation.supernode import SupernodeSupervisor
    from agent.federation.trainer_supervisor import TrainerSupervisor
    from agent.health.reporter import HealthReporter
    from agent.remote.service import RemoteConfig

logger = logging.getLogger(__name__)

TICK_S = 1.0
HANDOVER_TICK_S = 0.05  # how often a handover is looked at while the next agent starts
HANDOVER_ID_GAP = 1_000_000  # prediction ids left to the predecessor while both serve
HTTP_FD = "http"  # the listening socket's name in the unit's file descriptor store
KEEP_REJECTED = 5


class AgentRunner:
    def __init__(
        self,
        config: AgentSettings,
        *,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.notifier = notifier or Notifier.from_env()
        self.clock = clock
        self.started = time.monotonic()
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self.inbox = config.models.dir / "inbox"
        self.reporter: HealthReporter | None = None
        self.worker_cpus: list[int] | None = None  # with training.reserve_agent_cpu
        self.rejected = config.models.dir / "rejected"
        self.exit_code = exit_codes.OK  # RESTART: a remote config change asked for a restart
        self.remote: RemoteConfig | None = None
        self._handover_requested = threading.Event()
        self._successor: handover.Successor | None = None
        self.handed_over = False  # a successor serves: this agent stopped for it

    def _event(self, kind: str, data: dict[str, Any]) -> None:
        logger.info("event %s %s", kind, data)
        self.events.append((self.clock(), kind, data))
        del self.events[:-100]
        if self.reporter is not None:
            self.reporter.event(kind, data)

    def _reporter(
        self, sections: Callable[[], HealthParts], slots: ModelSlots
    ) -> HealthReporter | None:
        """The MQTT health reporter, when ``[mqtt] host`` is set."""
        cfg = self.config
        if cfg.mqtt.host is None:
            return None
        from agent.health.reporter import HealthReporter

        capabilities = ["predict"] + (["train", "federate"] if cfg.federation.enabled else [])

        def birth() -> BirthParts:
            predictor = slots.current()
            m = None if predictor is None else predictor.manifest
            model = None if m is None else ModelInfo(m.version, m.sha256, m.quantization)
            version = self.remote.settings if self.remote else cfg
            return replace(
                birth_facts(cfg, capabilities), model=model, config_version=version.config_version
            )

        return HealthReporter(
            cfg.mqtt,
            cfg.device_id,
            health=cfg.health,
            fleet=cfg.fleet,
            snapshot=sections,
            birth=birth,
            clock=self.clock,
        )

    def _delivery(self, slots: ModelSlots) -> DeliveryService | None:
        """Desired-state model delivery, over the health reporter's MQTT connection."""
        cfg = self.config
        if self.reporter is None:
            return None
        from agent.delivery.fetch import HttpFetcher
        from agent.delivery.service import DeliveryService

        check = None
        if cfg.models.trust_ca is not None:
            from agent.delivery.trust import signature_check

            check = signature_check(cfg.models.trust_ca)
        service = DeliveryService(
            cfg.models,
            slots,
            device_id=cfg.device_id,
            fetcher=HttpFetcher(
                timeout_s=cfg.models.fetch_timeout_s,
                tls_ca=cfg.mqtt.tls_ca,
                tls_cert=cfg.mqtt.tls_cert,
                tls_key=cfg.mqtt.tls_key,
            ),
            check_signature=check,
            on_event=self._event,
        )
        self.reporter.subscribe(self.reporter.topics.desired, service.on_message)
        return service

    def _remote(self, parts: LiveParts, server: HttpServer, stop: threading.Event) -> RemoteConfig:
        """Signed configuration commands (agent/remote/), and judging a change on trial."""
        from agent.delivery.fetch import HttpFetcher
        from agent.remote.auth import CommandAuth
        from agent.remote.service import RemoteConfig
        from agent.remote.state import RemoteFiles
        from agent.remote.trial import healthz
        from agent.software.updates import software_updates

        cfg, reporter = self.config, self.reporter
        files = RemoteFiles(cfg.state_dir)
        fetcher = HttpFetcher(
            timeout_s=cfg.models.fetch_timeout_s,
            tls_ca=cfg.mqtt.tls_ca,
            tls_cert=cfg.mqtt.tls_cert,
            tls_key=cfg.mqtt.tls_key,
        )

        def send(ack: Ack) -> None:
            if reporter is not None:  # through the outbox: survives a broker outage
                reporter.ack(ack)
            reason = ack.errors[0] if ack.errors else None
            data = {"seq": ack.seq, "status": ack.status, "config_version": ack.config_version}
            self._event("remote_config", {**data, "live": ack.live, "reason": reason})

        def health(need_broker: bool) -> str | None:
            if not server.alive or (parts.sampler is not None and not parts.sampler.running):
                return "the HTTP server or the sampler is not running"
            if need_broker and not (reporter is not None and reporter.transport.connected):
                return "not connected to the MQTT broker"
            installed = (cfg.models.dir / ACTIVE_FILE).exists()
            return healthz(server.url, token=cfg.http.token, model_expected=installed)

        def restart(reason: str) -> None:
            logger.warning("restarting (exit %d): %s", exit_codes.RESTART, reason)
            self.exit_code = exit_codes.RESTART
            stop.set()

        remote = RemoteConfig(
            cfg,
            files=files,
            auth=CommandAuth(cfg.models.trust_ca, files.signers, fetcher),
            live=parts,
            send=send,
            restart=restart,
            health=health,
            on_event=self._event,
            flushed=lambda: reporter is None or reporter.outbox.stats().queued == 0,
            clock=self.clock,
            updates=software_updates(cfg, fetcher, self.clock),
        )
        if reporter is not None:
            reporter.subscribe(reporter.topics.command, remote.on_message)
        return remote

    def run(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set. Raises ``AgentError`` on a startup failure."""
        cfg = self.config
        # Before any thread starts: every thread the agent starts inherits its CPUs.
        board = cpus.available()
        reserve = cfg.training.reserve_agent_cpu
        self.worker_cpus = cpus.worker_cpus(board, reserve) if reserve else None
        cpus.pin_thread(cpus.agent_cpus(board, reserve), "the agent")
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self.inbox.mkdir(parents=True, exist_ok=True)
        store = open_store(cfg.store)
        metrics = AgentMetrics(store=store.stats)
        successor = handover.is_successor()

        labels = LabelService(  # the prediction log beside store.db; POST /api/labels
            cfg.labels,
            store,
            # A successor shares the log with the agent it takes over from for a moment.
            log=open_log(cfg.labels, store, skip_ids=HANDOVER_ID_GAP if successor else 0),
            model=lambda: None if (p := slots.current()) is None else p.manifest,
            on_event=self._event,
        )

        def model_event(kind: str, data: dict[str, Any]) -> None:
            metrics.record_model_event(kind, data)  # orchard_model_events_total{event=...}
            if kind == "model_swapped":  # a new serving period: its live figures restart
                labels.begin_period(str(data["version"]))
            self._event(kind, data)

        slots = ModelSlots(
            cfg.models.dir,
            num_threads=cfg.models.num_threads,
            latency_bound_ms=cfg.models.latency_bound_ms,
            on_event=model_event,
        )
        slots.load()

        def store_sample(sample: Sample) -> None:
            try:
                store.append(sample)
            except Exception:  # the sampler logs it once per outage; /metrics counts each
                metrics.record_error("store_write")
                raise

        sampler = Sampler(
            build_sensors(cfg.sensor_tables, clock=self.clock),
            store_sample,
            clock=self.clock,
            config=cfg.sampling,
            on_state_change=self._sensor_changed,
        )
        metrics.bind(sensors=sampler.status)
        trainer, supernode = self._federation()
        delivery: DeliveryService | None = None

        def sections() -> HealthParts:
            parts = health_sections(metrics, sampler, slots, trainer, supernode, labels)
            return parts if delivery is None else replace(parts, delivery=delivery.section())

        app = create_app(
            slots=slots,
            store=store,
            metrics=metrics,
            settings=cfg.http,
            labels=labels,
            agent_state=lambda: AgentState(
                device_id=cfg.device_id,
                sensors=self._sensor_states(sampler),
                tensorflow_loaded="tensorflow" in sys.modules,
                federation=supernode.info() if supernode else DISABLED,
                trainer=trainer.snapshot() if trainer else None,
                mqtt=self._mqtt_state(),
            ),
        )
        server = HttpServer(app, cfg.http)
        remote: RemoteConfig | None = None
        try:
            labels.start()
            # Predictions first: after a restart (a software update, a remote config change)
            # the endpoint is back before MQTT, delivery and remote commands are even built.
            server.start(sock=self._inherited_http())
            if not server.inherited:  # the next agent (a restart) takes it over from systemd
                self.notifier.store_fd(server.fileno, HTTP_FD)
            if successor:  # the previous agent stops now; then MQTT and the rest
                handover.warm_up(server.url.replace("0.0.0.0", "127.0.0.1"))
                handover.announce_serving()
                handover.wait_predecessor_gone()
            self.reporter = self._reporter(sections, slots)
            delivery = self._delivery(slots)
            remote = self.remote = self._remote(LiveParts(sampler, trainer, labels), server, stop)
            remote.start()
            if self.reporter and cfg.labels.mqtt_topic:
                self.reporter.subscribe(cfg.labels.mqtt_topic, labels.on_mqtt)
            sampler.start()
            if trainer and supernode:
                trainer.start()
                supernode.start()
            if delivery:
                delivery.start()
            if self.reporter:
                self.reporter.start()
            self.notifier.notify(f"READY=1\nSTATUS=serving on {server.url}")
            if self.reporter:
                self.reporter.set_state("ready")
            remote.ready()
            logger.info("agent %s serving on %s", cfg.device_id, server.url)
            self._loop(stop, slots, sampler, server)
        finally:
            self.notifier.notify("STOPPING=1")
            if remote is not None:
                remote.stop()
            if supernode:
                supernode.stop()
            if trainer:
                trainer.stop()
            if delivery:
                delivery.stop()
            sampler.stop()
            if self.reporter:  # before the HTTP server: its last publish is not downtime
                self.reporter.stop()
            server.stop()
            labels.close()  # writes the predictions still pending
            store.close()
            self.notifier.close()

    def _federation(self) -> tuple[TrainerSupervisor | None, SupernodeSupervisor | None]:
        """The trainer and SuperNode supervisors, when ``[federation] enabled``."""
        cfg = self.config
        if not cfg.federation.enabled:
            return None, None
        from agent.federation.supernode import SupernodeSupervisor
        from agent.federation.trainer_supervisor import TrainerSupervisor

        config_path = Path(cfg.source).resolve()
        trainer = TrainerSupervisor(
            cfg.federation,
            cfg.training,
            config_path=config_path,
            state_dir=cfg.state_dir,
            on_event=self._event,
            cpus=self.worker_cpus,
        )
        supernode = SupernodeSupervisor(
            cfg.federation,
            state_dir=cfg.state_dir,
            on_event=self._event,
            node_config={"device-id": cfg.device_id, "agent-config": str(config_path)},
            cpus=self.worker_cpus,
        )
        return trainer, supernode

    @staticmethod
    def _inherited_http() -> socket.socket | None:
        fd = inherited_fds().get(HTTP_FD)
        passed = handover.inherited_socket()  # from the previous agent itself (a handover)
        if passed is not None:
            if fd is not None:
                os.close(fd)
            return passed
        return None if fd is None else socket.socket(fileno=fd)

    def request_handover(self) -> None:
        """From the SIGUSR2 handler: start a successor (agent/handover.py) at the next tick."""
        self._handover_requested.set()

    def _handover_tick(self, stop: threading.Event, http: HttpServer) -> None:
        if self._handover_requested.is_set() and self._successor is None:
            self._handover_requested.clear()
            logger.info("handover: starting the next agent (%s)", handover.argv()[0])
            self._successor = handover.Successor(handover.argv(), http.fileno)
        successor = self._successor
        if successor is None:
            return
        state = successor.poll()
        if state == "serving":
            self.notifier.notify(f"MAINPID={successor.pid}")
            logger.info("handover: agent %d serves; this one stops", successor.pid)
            self.handed_over = True
            stop.set()
        elif state == "failed":
            logger.warning("handover failed, this agent goes on: %s", successor.reason)
            self._event("handover_failed", {"reason": successor.reason or ""})
            self._successor = None
            try:  # for the updater, which waits for a new main process that will not come
                write_atomic(
                    self.config.state_dir / handover.FAILED_FILE,
                    (successor.reason or "no reason").encode(),
                )
            except OSError as exc:
                logger.warning("cannot record the failed handover: %s", exc)

    def _sensor_changed(self, name: str, state: SensorState, message: str | None) -> None:
        """A sensor failed or came back: an ``event`` over MQTT and in ``/healthz``."""
        kind = "sensor_recovered" if state == SensorState.OK else "sensor_failed"
        self._event(kind, {"sensor": name, "state": str(state), "message": message or ""})

    def _mqtt_state(self) -> MqttLink:
        """The health link for ``/healthz``: connected, protocol, and why it last failed."""
        if self.reporter is None:
            return MqttLink(enabled=False)
        transport = self.reporter.transport
        return MqttLink(True, transport.connected, transport.protocol, transport.last_error)

    @staticmethod
    def _sensor_states(sampler: Sampler) -> dict[str, str]:
        return {name: s.state.value for name, s in sampler.status().items()}

    def _loop(
        self, stop: threading.Event, slots: ModelSlots, sampler: Sampler, http: HttpServer
    ) -> None:
        watchdog_every = (self.notifier.watchdog_s or 0) / 2 or None
        last_ping = 0.0
        while not stop.wait(HANDOVER_TICK_S if self._successor else TICK_S):
            self._handover_tick(stop, http)
            if stop.is_set():
                break
            self.install_from_inbox(slots)
            if not http.alive:
                raise AgentError("the HTTP server thread died")
            alive = sampler.running
            now = time.monotonic()
            if watchdog_every and alive and now - last_ping >= watchdog_every:
                self.notifier.notify("WATCHDOG=1")
                last_ping = now

    def install_from_inbox(self, slots: ModelSlots) -> None:
        """Install every complete bundle in the inbox, oldest first."""
        try:
            candidates = sorted(
                (p for p in self.inbox.iterdir() if p.is_dir() and not p.name.startswith(".")),
                key=lambda p: p.stat().st_mtime,
            )
        except OSError as exc:
            logger.warning("cannot list %s: %s", self.inbox, exc)
            return
        for candidate in candidates:
            try:
                slots.install(candidate)
            except ModelSlotError as exc:
                logger.warning("model %s rejected: %s", candidate.name, exc)
                self._keep_rejected(candidate)
            else:
                shutil.rmtree(candidate, ignore_errors=True)

    def _keep_rejected(self, candidate: Path) -> None:
        self.rejected.mkdir(parents=True, exist_ok=True)
        target = self.rejected / f"{int(self.clock())}-{candidate.name}"
        shutil.rmtree(target, ignore_errors=True)
        candidate.rename(target)
        for old in sorted(self.rejected.iterdir(), key=lambda p: p.stat().st_mtime)[
            :-KEEP_REJECTED
        ]:
            shutil.rmtree(old, ignore_errors=True)
