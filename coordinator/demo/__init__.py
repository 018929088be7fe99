"""``orchard-coordinator demo``: a coordinator and N simulated boards on loopback, one command.

No hardware and no services: a SuperLink, N real ``orchard-agent run`` processes (each with
its own store, ports and non-IID data, and a real trainer), a federated run with progress per
round, the plots, and each device's answer from ``GET /api/predict/latest`` at the end.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator.config import CoordinatorSettings
from coordinator.delivery.settings import DeliverySettings
from coordinator.demo import datasets
from coordinator.demo.fleet import Device, free_port, wait_connected, wait_until
from coordinator.demo.partition import Partitioning, split
from coordinator.federation.runconfig import RunSettings
from coordinator.federation.superlink import SuperLinkSettings
from coordinator.health.settings import FleetHealthSettings
from coordinator.rollout.settings import RolloutSettings
from coordinator.service import Coordinator

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSettings:
    devices: int = 3
    rounds: int = 3
    data: str = "synthetic"  # or csv:PATH
    task: str = "classify"
    partition: str = "dirichlet:1.0"
    strategy: str = "fedavg"
    workdir: Path = Path("orchard-demo")
    quantization: str = "int8"
    local_epochs: int = 3
    seed: int = 0
    connect_timeout_s: float = 180.0
    extra_agent_config: dict[str, Any] | None = None


@dataclass
class DemoResult:
    run_id: str
    run_dir: Path
    history: dict[str, Any]
    answers: dict[str, Any]
    seconds: float
    dashboard_url: str | None = None


def run(opts: DemoSettings, say: Callable[[str], None] = print) -> DemoResult:
    started = time.monotonic()
    work = opts.workdir.resolve()
    shutil.rmtree(work / "devices", ignore_errors=True)
    shutil.rmtree(work / "superlink", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    prepared = datasets.prepare(opts.data, opts.task, opts.devices, seed=opts.seed)
    parts = split(prepared.train, opts.devices, Partitioning.parse(opts.partition), seed=opts.seed)
    validation = work / "validation.csv"
    datasets.write_validation(validation, prepared.validation)
    say(
        f"data: {prepared.describe}; {len(prepared.train)} rows split {opts.partition} over "
        f"{opts.devices} devices ({', '.join(str(len(p)) for p in parts)} rows), "
        f"{len(prepared.validation)} held out on the coordinator"
    )
    config = CoordinatorSettings(
        state_dir=work,
        superlink=SuperLinkSettings(port=free_port(), workdir=work / "superlink"),
        model=prepared.spec,
        run=RunSettings(
            num_server_rounds=opts.rounds,
            strategy=opts.strategy,
            min_devices=opts.devices,
            round_timeout=240.0,
            wait_for_devices=60.0,
            local_epochs=opts.local_epochs,
            model_name=f"demo-{prepared.spec.family}",
            quantization=opts.quantization,
            validation=str(validation),
            seed=opts.seed,
        ),
        health=FleetHealthSettings.from_mapping(
            {"mqtt": {"port": 0}, "dashboard": {"port": free_port()}}
        ),
        # the final model goes to every board as its desired state (no canary in a demo)
        delivery=DeliverySettings(port=free_port()),
        rollout=RolloutSettings(after_run="deliver", tick_s=1.0),
        source="demo",
    )
    devices = [
        Device(i, f"demo-{i + 1}", work / "devices" / f"demo-{i + 1}") for i in range(opts.devices)
    ]
    with ExitStack() as stack:
        coordinator = stack.enter_context(Coordinator(config, say=say))
        health = coordinator.health
        mqtt = {"host": health.mqtt_host, "port": health.mqtt_port, "health_interval_s": 5.0}
        say(f"starting {opts.devices} agents ...")
        for device, part in zip(devices, parts, strict=True):
            device.configure(
                superlink=config.superlink.address,
                sensor=prepared.live_sensor(device, part),
                extra={"mqtt": mqtt, **(opts.extra_agent_config or {})},
            )
            device.seed(part)
            device.start()
            stack.callback(device.stop)
        wait_connected(devices, opts.connect_timeout_s)
        say(f"{opts.devices} agents serving and connected")
        result = coordinator.train()
        coordinator.deliver_after_run(result, timeout=90.0)
        run_id, history = result.run_id, result.history
        final = f"{run_id}.{opts.rounds}"
        answers = latest_answers(devices, final)
        dashboard = health.dashboard_url
    run_dir = work / "runs" / run_id
    return DemoResult(run_id, run_dir, history, answers, time.monotonic() - started, dashboard)


def latest_answers(devices: list[Device], version: str, timeout: float = 90.0) -> dict[str, Any]:
    """Each device's ``/api/predict/latest`` once it serves the final model (bounded wait)."""

    def serving() -> bool:
        for d in devices:
            h = d.healthz()
            if h is None or h.model is None or not h.model.version.startswith(version):
                return False
        return True

    try:
        wait_until(f"every device to serve model {version}", serving, timeout, poll_s=0.5)
    except Exception as exc:  # report what each serves instead of failing the demo
        logger.warning("%s", exc)
    answers: dict[str, Any] = {}
    for d in devices:
        try:
            answers[d.device_id] = d.get("/api/predict/latest")
        except Exception as exc:
            answers[d.device_id] = {"error": str(exc)}
    return answers
