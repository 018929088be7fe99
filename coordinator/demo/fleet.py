"""Simulated boards for the demo and the tests: real ``orchard-agent run`` processes.

Each device gets its own directory (agent.toml, store.db, models/, trainer socket, Flower
home), its own HTTP and Flower runtime ports, and its own partition of the data, written into
its store as past readings before the agent starts — as if it had been sampling for a while.
A live sensor keeps adding readings while it runs (synthetic, or a replay of its partition).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from agent.healthz import Healthz, HealthzError
from coordinator.data import Table, write_csv
from coordinator.errors import CoordinatorError
from orchard_common import procs

logger = logging.getLogger(__name__)
BIN = Path(sys.executable).parent


class FleetError(CoordinatorError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Device:
    index: int
    device_id: str
    root: Path
    http_port: int = field(default_factory=free_port)
    runtime_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.root / "agent.toml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def seed(self, table: Table, step_s: float = 60.0) -> int:
        """Write ``table`` into the device's store as past readings, ``step_s`` apart.

        Through the agent's own ``orchard-agent import-csv`` (after :meth:`configure`): the
        store is the agent's to write, the coordinator only hands it a CSV.
        """
        path = self.root / "seed.csv"
        write_csv(path, table)
        proc = subprocess.run(
            [
                str(BIN / "orchard-agent"),
                "import-csv",
                str(path),
                "--config",
                str(self.config_path),
                "--step-s",
                str(step_s),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            raise FleetError(f"seeding {self.device_id} failed: {proc.stderr.strip()}")
        return len(table)

    def configure(
        self, *, superlink: str, sensor: Mapping[str, Any], extra: Mapping[str, Any]
    ) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "device_id": self.device_id,
            "state_dir": str(self.root),
            "sensors": {"live": dict(sensor)},
            "http": {"host": "127.0.0.1", "port": self.http_port},
            "federation": {
                "enabled": True,
                "superlink": superlink,
                "insecure": True,
                "runtime_port": self.runtime_port,
                "trainer_socket": str(self.root / "trainer.sock"),
            },
            "training": {
                "memory_mb": 2048,
                "cpu_quota_pct": 50,
                "max_seconds": 300,
                "max_temp_c": 105,
                "idle_timeout_s": 300,
            },
        }
        for section, values in extra.items():
            if isinstance(values, Mapping):
                config.setdefault(section, {}).update(values)
            else:
                config[section] = values
        self.config_path.write_text(tomli_w.dumps(config))

    def partition_csv(self, table: Table) -> Path:
        path = self.root / "partition.csv"
        write_csv(path, table)
        return path

    def start(self) -> None:
        log = (self.root / "agent.log").open("ab")
        self.proc = subprocess.Popen(
            [str(BIN / "orchard-agent"), "run", "--config", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()

    def get(self, path: str, timeout: float = 5.0) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            return json.loads(resp.read())

    def health(self) -> dict[str, Any] | None:
        """``/healthz`` as raw JSON, or None while the agent does not answer."""
        try:
            return self.get("/healthz", timeout=2.0)
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def healthz(self) -> Healthz | None:
        """``/healthz`` decoded, or None while the agent does not answer (or answers nonsense)."""
        doc = self.health()
        try:
            return None if doc is None else Healthz.decode(doc)
        except HealthzError as exc:
            logger.warning("agent %s: %s", self.device_id, exc)
            return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        procs.stop(self.proc, timeout)

    def kill(self) -> None:
        """SIGKILL the agent and its Flower children (they watch their parent and exit)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def wait_until(what: str, predicate: Any, timeout: float, poll_s: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise FleetError(f"timed out after {timeout:g} s waiting for {what}")


def wait_connected(devices: list[Device], timeout: float) -> None:
    """Until every agent serves HTTP and its SuperNode has registered with the SuperLink."""

    def ready() -> bool:
        for d in devices:
            if not d.alive():
                raise FleetError(
                    f"agent {d.device_id} exited (rc {d.proc and d.proc.returncode}); "
                    f"see {d.root / 'agent.log'}"
                )
            h = d.healthz()
            if h is None or h.agent is None or h.agent.federation.supernode != "connected":
                return False
        return True

    wait_until("the agents to connect", ready, timeout)
