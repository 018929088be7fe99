"""``orchard-coordinator demo``: a coordinator and N simulated boards on loopback, one command.

No hardware and no services: a SuperLink, N real ``orchard-agent run`` processes (each with
its own store, ports and non-IID data, and a real trainer), a federated run with progress per
round, the plots, and each device's answer from ``GET /api/predict/latest`` at the end.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator.demo import datasets
from coordinator.demo.fleet import Device, free_port, wait_connected, wait_until
from coordinator.demo.partition import Partitioning, split
from coordinator.federation.runconfig import RunSettings
from coordinator.federation.submit import follow, submit
from coordinator.federation.superlink import SuperLink, SuperLinkSettings
from coordinator.health.service import HealthService
from coordinator.health.settings import HealthSettings
from coordinator.service import progress_line

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoOptions:
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


def run(opts: DemoOptions, say: Callable[[str], None] = print) -> DemoResult:
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
    link = SuperLink(SuperLinkSettings(port=free_port(), workdir=work / "superlink"))
    devices = [
        Device(i, f"demo-{i + 1}", work / "devices" / f"demo-{i + 1}") for i in range(opts.devices)
    ]
    with ExitStack() as stack:
        health = HealthService(
            HealthSettings.from_mapping({"mqtt": {"port": 0}, "dashboard": {"port": free_port()}}),
            runs_dir=work / "runs",
        )
        health.start()
        stack.callback(health.stop)
        say(f"dashboard: {health.dashboard_url} (embedded MQTT broker on "
            f"{health.mqtt_host}:{health.mqtt_port})")  # fmt: skip
        mqtt = {"host": health.mqtt_host, "port": health.mqtt_port, "health_interval_s": 5.0}
        link.start()
        stack.callback(link.stop)
        say(f"SuperLink on {link.settings.address}; starting {opts.devices} agents ...")
        for device, part in zip(devices, parts, strict=True):
            device.configure(
                superlink=link.settings.address,
                sensor=prepared.live_sensor(device, part),
                extra={"mqtt": mqtt, **(opts.extra_agent_config or {})},
            )
            device.seed(part)
            device.start()
            stack.callback(device.stop)
        wait_connected(devices, opts.connect_timeout_s)
        say(f"{opts.devices} agents serving and connected; submitting {opts.rounds} rounds of "
            f"{opts.strategy} ...")  # fmt: skip
        settings = RunSettings(
            num_server_rounds=opts.rounds,
            strategy=opts.strategy,
            min_devices=opts.devices,
            round_timeout=240.0,
            wait_for_devices=60.0,
            local_epochs=opts.local_epochs,
            model_spec=json.dumps(prepared.spec.to_dict()),
            model_name=f"demo-{prepared.spec.family}",
            quantization=opts.quantization,
            out_dir=str(work / "runs"),
            validation=str(validation),
            seed=opts.seed,
            registry=str(health.registry.path) if health.registry else "",
        )
        run_id = submit(link, settings, work / "superlink")
        say(f"run {run_id}: {work / 'runs' / run_id}")
        history = follow(
            link, run_id, settings, on_round=lambda r: say(progress_line(r, opts.rounds))
        )
        final = f"{run_id}.{opts.rounds}"
        answers = latest_answers(devices, final)
        dashboard = health.dashboard_url
    run_dir = work / "runs" / run_id
    return DemoResult(run_id, run_dir, history, answers, time.monotonic() - started, dashboard)


def latest_answers(devices: list[Device], version: str, timeout: float = 90.0) -> dict[str, Any]:
    """Each device's ``/api/predict/latest`` once it serves the final model (bounded wait)."""

    def serving() -> bool:
        for d in devices:
            model = (d.health() or {}).get("model") or {}
            if not str(model.get("version") or "").startswith(version):
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
