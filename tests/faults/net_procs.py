"""The processes the network scenarios share: a small federation and a prediction load.

``fed_fleet`` starts a SuperLink (with ``--database``) and real ``orchard-agent run`` devices
serving a bundle; ``Predictions`` hammers their ``POST /api/predict`` from a thread while a
fault runs; ``kill_superlink`` SIGKILLs the SuperLink and reaps its children. ``Progress`` is
the progress sink every scenario takes (``quiet`` in the tests, ``print`` in the chaos bench).
Used by tests/faults/mqtt_scenarios.py and fed_scenarios.py (re-exported by net_scenarios.py).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from coordinator.demo import datasets
from coordinator.demo.fleet import Device, wait_connected, wait_until
from coordinator.demo.partition import Partitioning, split
from coordinator.federation.runconfig import RunSettings
from coordinator.federation.superlink import SuperLink, SuperLinkSettings
from tests.brokers import free_port

PREDICT_BODY = json.dumps({"features": [21.0, 45.0, 1013.0, 150.0, 600.0]}).encode()
Progress = Callable[[str], None]


def quiet(message: str) -> None:
    """The default progress sink: tests stay silent, the bench passes ``print``."""


# -- federation -----------------------------------------------------------------------------


@dataclass
class FedFleet:
    link: SuperLink
    devices: list[Device]
    prepared: datasets.Prepared
    work: Path
    victim_max_seconds: float

    def settings(self, **changes: Any) -> RunSettings:
        base = RunSettings(
            num_server_rounds=1,
            min_devices=len(self.devices),
            round_timeout=120.0,
            wait_for_devices=60.0,
            local_epochs=2,
            fraction_evaluate=0.0,
            model_spec=json.dumps(self.prepared.spec.to_dict()),
            model_name="faults",
            quantization="float32",
            out_dir=str(self.work / "runs"),
            validation=str(self.work / "validation.csv"),
        )
        return base.replace(**changes)

    @property
    def victim(self) -> Device:
        """The device with the tight ``training.max_seconds``."""
        return self.devices[-1]

    def node_of(self, device: Device) -> int:
        return int((device.health() or {})["federation"]["node_id"])


@contextlib.contextmanager
def fed_fleet(
    work: Path, bundle: Path, *, devices: int = 2, victim_max_seconds: float = 30.0
) -> Iterator[FedFleet]:
    """A SuperLink (with ``--database``) and ``devices`` agents serving ``bundle``.

    The last device's trainer may run ``victim_max_seconds`` per request; the others 300 s.
    """
    prepared = datasets.prepare("synthetic", "classify", devices, seed=1)
    parts = split(prepared.train, devices, Partitioning.parse("iid"), seed=1)
    datasets.write_validation(work / "validation.csv", prepared.validation)
    link = SuperLink(SuperLinkSettings(port=free_port(), workdir=work / "link"))
    link.start()
    fleet = [Device(i, f"fl-{i + 1}", work / f"d{i + 1}") for i in range(devices)]
    try:
        for device, part in zip(fleet, parts, strict=True):
            victim = device is fleet[-1]
            device.configure(
                superlink=link.settings.address,
                sensor=prepared.live_sensor(device, part),
                # niced, not idle-scheduled: these faults are not about a busy box starving
                # the trainers (see training.idle_scheduling)
                extra={
                    "training": {"idle_scheduling": False}
                    | ({"max_seconds": victim_max_seconds} if victim else {})
                },
            )
            device.seed(part)
            shutil.copytree(bundle, device.root / "models" / "inbox" / "served")
            device.start()
        wait_connected(fleet, 180)
        wait_until(
            "every device to serve its model",
            lambda: all((d.health() or {}).get("model_loaded") for d in fleet),
            60,
        )
        yield FedFleet(link, fleet, prepared, work, victim_max_seconds)
    finally:
        for device in fleet:
            device.stop()
        link.stop()


class Predictions:
    """Predict on every device every ``every_s`` from a thread; keeps each HTTP status."""

    def __init__(self, devices: list[Device], every_s: float = 0.2) -> None:
        self.devices = devices
        self.every_s = every_s
        self.statuses: dict[str, list[int]] = {d.device_id: [] for d in devices}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="predictions", daemon=True)

    def __enter__(self) -> Predictions:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            for device in self.devices:
                self.statuses[device.device_id].append(predict(device))


def predict(device: Device) -> int:
    """The HTTP status of one ``POST /api/predict`` (-1: no answer at all)."""
    req = urllib.request.Request(
        device.url + "/api/predict", PREDICT_BODY, {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return -1


def kill_superlink(link: SuperLink, timeout: float = 20.0) -> int:
    """SIGKILL the SuperLink; return how many of its children outlived it by ``timeout``."""
    assert link.proc is not None
    children = psutil.Process(link.proc.pid).children(recursive=True)
    link.proc.kill()
    link.proc.wait(10)
    _, alive = psutil.wait_procs(children, timeout=timeout)
    for proc in alive:  # reported by the caller; never left behind
        with contextlib.suppress(psutil.Error):
            proc.kill()
    return len(alive)
