"""The fleets the federated benchmark runs on, and the trainers' state log.

- ``OrchardFleet``: a SuperLink and N real ``orchard-agent run`` processes, as the demo starts
  them;
- ``FloorFleet`` and ``run_floor_app``: Flower's floor, the numpy-only app in
  ``benchmarks/flower_floor`` on plain ``flower-supernode`` processes;
- ``StateLog``: samples the trainers' status files, to classify requests and time phases.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks.fedbench.common import BIN, FLOOR_APP, say
from coordinator.data import Table
from coordinator.demo import datasets
from coordinator.demo.fleet import Device, free_port, wait_connected, wait_until
from coordinator.federation.history import RoundSummary
from coordinator.federation.runconfig import RunSettings
from coordinator.federation.submit import follow, submit
from coordinator.federation.superlink import (
    CONNECTION,
    SuperLink,
    SuperLinkSettings,
    flower_env,
)


# -- an Orchard fleet: SuperLink + N real agents ------------------------------------------
class OrchardFleet:
    """A SuperLink and one real ``orchard-agent run`` per partition, as the demo starts them.

    The agents' live sensors read once an hour, so the stores hold just the seeded partition
    and the federation trains on the same rows the centralised baseline pools.
    """

    def __init__(
        self,
        work: Path,
        prepared: datasets.Prepared,
        parts: list[Table],
        seed: int,
        training: dict[str, Any] | None = None,
    ):
        self.work = work
        self.training = training or {}  # agent.toml [training] overrides
        self.prepared = prepared
        self.parts = parts
        self.seed = seed
        self.link = SuperLink(SuperLinkSettings(port=free_port(), workdir=work / "superlink"))
        self.devices = [
            Device(i, f"bench-{i + 1}", work / "devices" / f"bench-{i + 1}")
            for i in range(len(parts))
        ]
        self.validation = work / "validation.csv"
        self._stack = ExitStack()

    def __enter__(self) -> OrchardFleet:
        datasets.write_validation(self.validation, self.prepared.validation)
        try:
            self.link.start()
            self._stack.callback(self.link.stop)
            for device, part in zip(self.devices, self.parts, strict=True):
                sensor = {
                    "driver": "synthetic",
                    "interval_s": 3600.0,
                    "seed": self.seed,
                    "device_index": device.index,
                }
                device.configure(
                    superlink=self.link.settings.address,
                    sensor=sensor,
                    extra={"training": self.training},
                )
                device.seed(part)
                device.start()
                self._stack.callback(device.stop)
            wait_connected(self.devices, 240.0 + 20 * len(self.devices))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def settings(self, **changes: Any) -> RunSettings:
        base = RunSettings(
            min_devices=len(self.devices),
            round_timeout=600.0,
            wait_for_devices=120.0,
            model_spec=json.dumps(self.prepared.spec.to_dict()),
            model_name="bench-mlp",
            out_dir=str(self.work / "runs"),
            validation=str(self.validation),
            seed=self.seed,
        )
        return base.replace(**changes)

    def run(self, settings: RunSettings, label: str) -> tuple[str, dict[str, Any]]:
        run_id = submit(self.link, settings, self.work / "superlink")

        def line(r: RoundSummary) -> None:
            central = r.central.get("metric")
            say(
                f"{label} round {r.round}/{settings.num_server_rounds}: central "
                f"{'-' if central is None else f'{central:.4f}'}, {r.duration_s or 0:.1f} s, "
                f"{r.failures} failures"
            )

        return run_id, follow(self.link, run_id, settings, on_round=line)


# -- Flower's floor: the numpy-only app on plain SuperNodes --------------------------------
class FloorFleet:
    """A SuperLink and N plain ``flower-supernode`` processes for the numpy-only floor app."""

    def __init__(self, work: Path, nodes: int) -> None:
        self.work = work
        self.link = SuperLink(SuperLinkSettings(port=free_port(), workdir=work / "superlink"))
        self.nodes = nodes
        self.procs: list[subprocess.Popen[bytes]] = []
        self._stack = ExitStack()

    def __enter__(self) -> FloorFleet:
        try:
            self.link.start()
            self._stack.callback(self.link.stop)
            for i in range(self.nodes):
                root = self.work / f"node-{i}"
                (root / "flwr-home").mkdir(parents=True, exist_ok=True)
                cmd = [
                    str(BIN / "flower-supernode"),
                    "--insecure",
                    "--superlink",
                    self.link.settings.address,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(free_port()),
                    "--node-config",
                    f"partition-id={i}",
                ]
                with (root / "supernode.log").open("ab") as log:
                    proc = subprocess.Popen(
                        cmd,
                        cwd=root,
                        env=flower_env(root / "flwr-home"),
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                self.procs.append(proc)
                self._stack.callback(_terminate, proc)
            wait_until(f"{self.nodes} SuperNodes to connect", self._connected, 180.0, poll_s=1.0)
        except BaseException:
            self._stack.close()
            raise
        return self

    def _connected(self) -> bool:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"flower-supernode exited with {proc.returncode}")
        logs = [(self.work / f"node-{i}" / "supernode.log") for i in range(self.nodes)]
        return all("SuperNode ID" in p.read_text(errors="replace") for p in logs if p.exists())

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def run(self, rounds: int, array_size: int, timeout: float = 900.0) -> dict[str, Any]:
        return run_floor_app(
            self.link,
            self.work,
            rounds=rounds,
            nodes=self.nodes,
            array_size=array_size,
            timeout=timeout,
        )


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def run_floor_app(
    link: SuperLink,
    work: Path,
    *,
    rounds: int,
    nodes: int,
    array_size: int,
    timeout: float,
    federation_config: str | None = None,
) -> dict[str, Any]:
    """Submit the floor app, wait (bounded) for it to finish, return its history and status."""
    out = work / "floor-runs"
    config = work / "floor-config.toml"
    config.write_text(
        f"num-server-rounds = {rounds}\nmin-nodes = {nodes}\narray-size = {array_size}\n"
        f"round-timeout = 300.0\nwait-for-nodes = 300.0\nout-dir = {json.dumps(str(out))}\n"
    )
    args = ["run", str(FLOOR_APP), CONNECTION, "-c", str(config)]
    if federation_config:
        args += ["--federation-config", federation_config]
    run_id = str(link.flwr(*args, timeout=120)["run-id"])
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = link.run_status(run_id)
        if str(status.get("status", "")).startswith("finished"):
            break
        time.sleep(2.0)
    else:
        link.stop_run(run_id)
        raise RuntimeError(f"floor run {run_id} passed its {timeout:g} s deadline; stopped it")
    history = json.loads((out / run_id / "history.json").read_text())
    if status.get("status") != "finished:completed":
        raise RuntimeError(
            f"floor run {run_id} {status.get('status')}: {status.get('status-details')}"
        )
    return {"run_id": run_id, "status": status, "history": history}


# -- the trainers' states, sampled ---------------------------------------------------------
class StateLog:
    """Samples trainers' status files every ``every_s``: (time, device, state, round)."""

    def __init__(self, paths: list[Path], every_s: float = 0.02) -> None:
        self.paths, self.every_s = paths, every_s
        self.points: list[tuple[float, int, str, int | None]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> StateLog:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)

    def _loop(self) -> None:
        from agent.federation import status

        while not self.stop.is_set():
            for i, path in enumerate(self.paths):
                data = status.read(path)
                self.points.append((time.perf_counter(), i, data.state, data.round))
            self.stop.wait(self.every_s)

    def state_at(self, t: float, device: int = 0) -> str:
        import bisect

        mine = [p for p in self.points if p[1] == device]
        i = bisect.bisect_right([p[0] for p in mine], t) - 1
        return mine[i][2] if i >= 0 else "idle"

    def spans(self, states: set[str]) -> dict[int, float]:
        """Per round: first entry into ``states`` on any device to the last exit from them."""
        bounds: dict[int, list[float]] = {}
        for device in range(len(self.paths)):
            mine = [p for p in self.points if p[1] == device]
            for (t, _, state, rnd), (t_next, *_) in itertools.pairwise(mine):
                if state in states and rnd is not None:
                    b = bounds.setdefault(int(rnd), [t, t_next])
                    b[0], b[1] = min(b[0], t), max(b[1], t_next)
        return {rnd: b[1] - b[0] for rnd, b in bounds.items()}
