"""A real ``orchard-agent run`` on 127.0.0.1 for the fuzz tests, and what it exposes as state.

The agent runs with a synthetic sensor that is read once at start and then every hour, so the
store holds a fixed number of rows while a test runs: any change in ``orchard_store_rows`` is a
write the test caused. The process runs under an address-space limit (``RLIMIT_AS``): a safety
net for the shared test machine, so a candidate model that makes LiteRT reserve gigabytes fails
inside the agent instead of waking the kernel's OOM killer (see test_corrupt_models.py).
"""

from __future__ import annotations

import hashlib
import resource
import shutil
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.waiting import wait_until

BIN = Path(sys.executable).parent
TOKEN = "fuzz-token-0123456789"
ADDRESS_SPACE_LIMIT = 2 << 30  # bytes; the agent maps ~0.5 GB, most of it never touched


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _limit_address_space() -> None:  # runs in the child between fork and exec
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))


@dataclass
class AgentProcess:
    """``orchard-agent run`` with a state dir under ``root``; ``stop()`` ends it."""

    root: Path
    token: str | None = TOKEN
    mqtt_port: int | None = None  # health and events to a broker on 127.0.0.1
    device_id: str = field(default_factory=lambda: f"fuzz-{uuid.uuid4().hex[:8]}")
    proc: subprocess.Popen[str] | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def models(self) -> Path:
        return self.state / "models"

    @property
    def inbox(self) -> Path:
        return self.models / "inbox"

    @property
    def rejected(self) -> Path:
        return self.models / "rejected"

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.token is None else {"Authorization": f"Bearer {self.token}"}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=10)

    def start(self, timeout: float = 60.0) -> AgentProcess:
        self.port = free_port()
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "agent.toml"
        token = "" if self.token is None else f'token = "{self.token}"\n'
        mqtt = (
            ""
            if self.mqtt_port is None
            else f'[mqtt]\nhost = "127.0.0.1"\nport = {self.mqtt_port}\n'
        )
        config.write_text(
            f'device_id = "{self.device_id}"\nstate_dir = "{self.state}"\n'
            '[sensors.env]\ndriver = "synthetic"\ninterval_s = 3600\n'
            f"[http]\nport = {self.port}\n{token}{mqtt}"
        )
        log = (self.root / "agent.log").open("w")
        self.proc = subprocess.Popen(
            [str(BIN / "orchard-agent"), "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=_limit_address_space,
        )
        log.close()
        wait_until(self._serving, timeout, f"the agent to serve on {self.url}\n{self.log()}")
        return self

    def _serving(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"the agent exited early:\n{self.log()}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def peak_rss_mb(self) -> float:
        """The process's peak resident set (``VmHWM``), in MB."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM in /proc/PID/status")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        path = self.root / "agent.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    # -- handing over models the way the trainer does --------------------------------------------

    def offer(self, bundle: Path, name: str) -> Path:
        """Copy ``bundle`` into ``inbox/.NAME.tmp`` and rename it to ``inbox/NAME`` (atomic)."""
        tmp = self.inbox / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(bundle, tmp)
        target = self.inbox / name
        tmp.rename(target)
        return target

    def install(self, bundle: Path, name: str, timeout: float = 30.0) -> dict[str, Any]:
        """Offer a good bundle and wait until the agent serves it; returns ``/api/info``."""
        self.offer(bundle, name)
        wait_until(lambda: not (self.inbox / name).exists(), timeout, f"the agent to take {name}")
        with self.client() as c:
            info: dict[str, Any] = c.get("/api/info").json()
        return info


# -- what the agent exposes as state -------------------------------------------------------------


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` from a Prometheus text page."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def tree_digest(root: Path) -> str:
    """Hash of every file name and content under ``root`` (the model slots, ACTIVE, inbox)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


STATE_METRICS = ("orchard_model_loaded", "orchard_model_info", "orchard_store_rows")


def state_of(agent: AgentProcess, client: httpx.Client) -> dict[str, Any]:
    """What a rejected request must not change: model, slot, store rows, files, ok-predictions."""
    health = client.get("/healthz").json()
    info = client.get("/api/info", headers=agent.headers).json()
    metrics = metric_samples(client.get("/metrics", headers=agent.headers).text)
    kept = {k: v for k, v in metrics.items() if k[0] in STATE_METRICS}
    ok = {k: v for k, v in metrics.items() if k[0] == "orchard_predictions_total"}
    ok = {k: v for k, v in ok.items() if ("outcome", "ok") in k[1]}
    inference = metrics.get(("orchard_inference_seconds_count", ()), 0.0)
    return {
        "model": health["model"],
        "ready": health["ready"],
        "info": {k: info.get(k) for k in ("name", "version", "sha256", "slot", "task")},
        "metrics": kept,
        "ok_predictions": ok,
        "inferences": inference,
        "files": tree_digest(agent.models),
        "pid": agent.proc.pid if agent.proc else None,
    }
