"""``orchard-coordinator run``: the laptop's processes wired together.

Health (embedded broker or Mosquitto, ingest, registry, dashboard) starts first so boards can
report while the SuperLink comes up; the SuperLink keeps its state in ``state_dir``; the run is
submitted through ``flwr run`` and followed to the end with a deadline.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from coordinator.config import CoordinatorSettings
from coordinator.federation.history import RoundSummary
from coordinator.federation.submit import follow, submit
from coordinator.federation.superlink import SuperLink
from coordinator.health_service import HealthService
from coordinator.lifecycle import ModelLifecycle


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    history: dict[str, Any]


def progress_line(r: RoundSummary, rounds: int) -> str:
    def fmt(part: Mapping[str, float], key: str) -> str:
        return "-" if key not in part else f"{part[key]:.3f}"

    return (
        f"round {r.round}/{rounds}: train loss {fmt(r.train, 'loss')} "
        f"metric {fmt(r.train, 'metric')} | device eval {fmt(r.evaluate, 'metric')} | central "
        f"{fmt(r.central, 'metric')} | {len(r.selected)} devices, {len(r.skipped)} skipped, "
        f"{r.failures} failures | {r.duration_s or 0:.1f} s"
    )


class Coordinator:
    def __init__(self, config: CoordinatorSettings, say: Callable[[str], None] = print) -> None:
        self.config = config
        self.say = say
        self.health = HealthService(config.health, runs_dir=config.runs_dir, rollout=config.rollout)
        self.models = ModelLifecycle(config, self.health)
        self.superlink = SuperLink(config.superlink)
        self._stop = threading.Event()

    def __enter__(self) -> Coordinator:
        self.config.runs_dir.mkdir(parents=True, exist_ok=True)
        self.health.start()
        where = self.health.dashboard_url or "disabled"
        self.say(f"health: MQTT {self.health.mqtt_host}:{self.health.mqtt_port}, dashboard {where}")
        try:
            self.models.start()
            self.say(f"models: served on {self.models.url}")
            self.superlink.start()
        except BaseException:
            self.models.stop()
            self.health.stop()
            raise
        self.say(
            f"SuperLink listening on {self.config.superlink.host}:{self.config.superlink.port}"
        )
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.superlink.stop()
        self.models.stop()
        self.health.stop()

    def deliver_after_run(self, result: RunResult, timeout: float) -> bool:
        """``[rollout] after_run`` for the run's last round; with ``deliver``, wait (bounded)
        until every online device serves it. True when settled (or nothing to do)."""
        done = [r for r in result.history.get("rounds", []) if isinstance(r.get("round"), int)]
        if not done or result.history.get("status") != "completed":
            return True
        rounds = int(done[-1]["round"])
        rollout = self.models.after_run(result.run_id, rounds)
        mode = self.config.rollout.after_run
        if rollout is None:
            return True
        self.say(f"models: {mode} of {result.run_id}.{rounds} started ({rollout})")
        if mode != "deliver":
            return True  # a canary soaks for minutes: `rollout status` follows it
        settled = self.models.wait_settled(timeout)
        if not settled:
            self.say(f"models: not every online device serves it after {timeout:.0f} s")
        return settled

    def train(self) -> RunResult:
        settings = self.config.run_settings()
        registry = self.health.registry
        if registry is not None:
            sel = self.config.health.selection
            settings = settings.replace(
                registry=str(registry.path.resolve()),
                max_temp_c=sel.max_temp_c if sel.max_temp_c is not None else 1000.0,
                skip_throttled=sel.skip_throttled,
                min_free_memory_mb=int(sel.min_free_memory_mb or 0),
                max_failures_in_row=sel.max_failures_in_row or 0,
            )
        run_id = submit(self.superlink, settings, self.config.state_dir / "superlink")
        self.say(
            f"run {run_id} submitted: {settings.num_server_rounds} rounds of "
            f"{settings.strategy}, waiting for {settings.min_devices} device(s)"
        )
        rounds = settings.num_server_rounds
        history = follow(
            self.superlink, run_id, settings, on_round=lambda r: self.say(progress_line(r, rounds))
        )
        return RunResult(run_id, Path(settings.out_dir) / run_id, history)

    def wait(self, until: Callable[[], bool] | None = None) -> None:
        """Block until SIGTERM/SIGINT, or until ``until()`` is true."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        while not self._stop.wait(1.0):
            if until is not None and until():
                return
            if not self.superlink.alive:
                self.say("the SuperLink exited")
                return
