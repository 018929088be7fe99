"""Benchmark the coordinator's health ingest: many devices through Mosquitto; prints a table.

Simulated devices (a few paho clients, each publishing for many device ids) send one health
message per device every ``--interval`` seconds (default 1,000 devices every 5 s = 200 msg/s,
QoS 1) for ``--seconds`` through a real Mosquitto (default settings) into the coordinator's
``HealthService`` (ingest + SQLite registry + dashboard) running in its own process, so its CPU
and RSS are measured alone. Reports drops (published and acknowledged by the broker but never
stored), publish-to-stored latency p50/p99, coordinator CPU (% of one core) and RSS.

    .venv/bin/python benchmarks/health.py [--devices 1000] [--seconds 120] [--clients 8]
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import paho.mqtt.client as mqtt  # noqa: E402
import psutil  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion  # noqa: E402

from agent.health.schema import (  # noqa: E402
    Birth,
    Disk,
    Federation,
    Health,
    Inference,
    Memory,
    ModelInfo,
    Status,
    Throttling,
    Topics,
)

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port} after {timeout} s")


# -- the coordinator side (child process) ----------------------------------------------------


def serve(port: int, workdir: Path) -> None:
    """Run HealthService against the broker; answer "report"/"quit" lines on stdin."""
    from coordinator import health_service as service_mod
    from coordinator.health import registry as registry_mod
    from coordinator.health.settings import FleetHealthSettings

    latencies: list[float] = []

    class TimedRegistry(registry_mod.Registry):
        def record_many(self, messages: Any) -> None:
            super().record_many(messages)
            now = time.time()
            latencies.extend(
                now - m.payload.ts
                for m in messages
                if isinstance(m.payload, Health) and not m.retained
            )

    service_mod.Registry = TimedRegistry  # type: ignore[misc]
    settings = FleetHealthSettings.from_mapping(
        {
            "mqtt": {"host": "127.0.0.1", "port": port},
            "registry": {"path": str(workdir / "fleet.sqlite")},
            "dashboard": {"port": 0},
        }
    )
    svc = service_mod.HealthService(settings, runs_dir=workdir / "runs")
    svc.start()
    print(json.dumps({"ready": True, "dashboard": svc.dashboard_url}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "reset":
            latencies.clear()
            print(json.dumps({"ok": True}), flush=True)
        elif cmd == "report":
            m = svc.metrics
            print(
                json.dumps(
                    {
                        "ingested_health": m.count("ingested", "health"),
                        "ingested_all": sum(
                            m.count("ingested", k) for k in ("status", "birth", "health")
                        ),
                        "invalid": sum(
                            m.count("invalid", k)
                            for k in ("topic", "status", "birth", "health", "event", "store")
                        ),
                        "latencies": latencies,
                    }
                ),
                flush=True,
            )
        elif cmd == "quit":
            break
    svc.stop()


class Coordinator:
    def __init__(self, port: int, workdir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(port), "--workdir", str(workdir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.ps = psutil.Process(self.proc.pid)
        self.ready = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("the coordinator process exited")
        result: dict[str, Any] = json.loads(line)
        return result

    def ask(self, cmd: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        with contextlib.suppress(OSError, SystemExit):
            self.ask("quit")
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# -- the devices (this process) --------------------------------------------------------------

_NO_THROTTLE = Throttling(False, False, False, False, False, False, False, False)


def _health(seq: int, node_id: int) -> Health:
    return Health(
        seq=seq,
        ts=time.time(),
        uptime_s=1000.0 + seq,
        cpu_pct=12.5,
        load=(0.2, 0.3, 0.3),
        memory=Memory(total_mb=3800.0, available_mb=2100.0, pct=44.7),
        disk=Disk(free_mb=20_000.0, pct=31.0),
        rss_mb=61.0,
        cpu_temp_c=51.5,
        throttling=_NO_THROTTLE,
        model=ModelInfo(version="v3", sha256="ab" * 32, quantization="int8"),
        inference=Inference(count=100 + seq, p50_ms=0.4, p95_ms=0.9, errors=0),
        federation=Federation(supernode="connected", node_id=node_id),
    )


class Fleet:
    """``devices`` device ids spread over ``clients`` MQTT connections."""

    def __init__(self, port: int, devices: int, clients: int) -> None:
        self.names = [f"sim-{i:05d}" for i in range(devices)]
        self.acked = 0
        self._lock = threading.Lock()
        self.clients = []
        for k in range(clients):
            c = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=f"bench-fleet-{k}",
                protocol=MQTTProtocolVersion.MQTTv5,
            )
            c.on_publish = self._on_publish
            c.max_inflight_messages_set(1000)
            c.connect("127.0.0.1", port)
            c.loop_start()
            self.clients.append(c)
        self._health_mids: list[set[int]] = [set() for _ in range(clients)]
        self.published = 0

    def _on_publish(self, client: mqtt.Client, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        with self._lock:
            self.acked += 1

    def client_for(self, i: int) -> mqtt.Client:
        return self.clients[i % len(self.clients)]

    def announce(self) -> None:
        now = time.time()
        for i, name in enumerate(self.names):
            topics, c = Topics(name), self.client_for(i)
            c.publish(topics.status, Status("ready", 1, now).to_json(), qos=1, retain=True)
            c.publish(
                topics.birth,
                Birth(name, now, 1, health_interval_s=5.0).to_json(),
                qos=1,
                retain=True,
            )
            self.published += 2

    def run(self, seconds: float, interval: float) -> int:
        """Publish health on schedule for ``seconds``; returns how many health messages."""
        start = time.monotonic()
        n = len(self.names)
        heap = [(start + interval * i / n, i, 0) for i in range(n)]
        heapq.heapify(heap)
        sent = 0
        end = start + seconds
        while heap:
            due, i, seq = heap[0]
            if due >= end:
                break
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            heapq.heapreplace(heap, (due + interval, i, seq + 1))
            name = self.names[i]
            self.client_for(i).publish(Topics(name).health, _health(seq, i).to_json(), qos=1)
            sent += 1
        self.published += sent
        return sent

    def close(self) -> None:
        for c in self.clients:
            c.disconnect()
            c.loop_stop()


# -- main -------------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    mosq = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True, check=False)
    first = (mosq.stdout or mosq.stderr).splitlines()[0] if (mosq.stdout or mosq.stderr) else "?"
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {cpu}",
        "python": platform.python_version(),
        "paho-mqtt": version("paho-mqtt"),
        "broker": first.strip(),
        "sqlite": sqlite3.sqlite_version,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--interval", type=float, default=5.0, help="health period per device (s)")
    ap.add_argument("--clients", type=int, default=8, help="MQTT connections the devices share")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.workdir)
        return
    if not Path(MOSQUITTO).exists():
        raise SystemExit("mosquitto is not installed (apt-get install mosquitto)")

    with tempfile.TemporaryDirectory(prefix="orchard-health-bench-") as tmp:
        work = Path(tmp)
        port = _free_port()
        conf = work / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        broker = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        coord: Coordinator | None = None
        fleet: Fleet | None = None
        try:
            _wait_port(port)
            coord = Coordinator(port, work)
            fleet = Fleet(port, args.devices, args.clients)
            fleet.announce()
            expected_announce = 2 * args.devices
            _until(lambda: coord.ask("report")["ingested_all"] >= expected_announce, 60)  # type: ignore[union-attr]
            coord.ask("reset")
            cpu0, t0 = coord.ps.cpu_times(), time.monotonic()
            rss_peak = 0
            sampler_stop = threading.Event()

            def sample_rss() -> None:
                nonlocal rss_peak
                while not sampler_stop.wait(1.0):
                    rss_peak = max(rss_peak, coord.ps.memory_info().rss)  # type: ignore[union-attr]

            threading.Thread(target=sample_rss, daemon=True).start()
            sent = fleet.run(args.seconds, args.interval)
            cpu1, t1 = coord.ps.cpu_times(), time.monotonic()
            _until(lambda: fleet.acked >= fleet.published, 30)  # type: ignore[union-attr]
            _until(lambda: coord.ask("report")["ingested_health"] >= sent, 30)  # type: ignore[union-attr]
            sampler_stop.set()
            report = coord.ask("report")
            rss_end = coord.ps.memory_info().rss
        finally:
            if fleet is not None:
                fleet.close()
            if coord is not None:
                coord.close()
            broker.terminate()
            broker.wait(10)

    busy = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    lat = report["latencies"]
    rows = [
        ("devices x interval", f"{args.devices} x {args.interval:g} s, {args.clients} connections"),
        ("duration", f"{t1 - t0:.0f} s"),
        ("health messages published (acked by broker)", f"{sent}"),
        ("rate", f"{sent / (t1 - t0):.0f} msg/s"),
        ("stored by the coordinator", f"{report['ingested_health']:.0f}"),
        ("drops", f"{sent - report['ingested_health']:.0f}"),
        ("invalid", f"{report['invalid']:.0f}"),
        ("latency publish -> stored p50", f"{_pct(lat, 0.5) * 1000:.1f} ms"),
        ("latency publish -> stored p99", f"{_pct(lat, 0.99) * 1000:.1f} ms"),
        ("latency max", f"{max(lat) * 1000 if lat else float('nan'):.1f} ms"),
        ("coordinator CPU (one core = 100%)", f"{100 * busy / (t1 - t0):.1f} %"),
        (
            "coordinator RSS end / peak",
            f"{rss_end / 2**20:.0f} MB / {max(rss_peak, rss_end) / 2**20:.0f} MB",
        ),
    ]
    print("| health ingest | value |\n| --- | --- |")
    for k, v in rows:
        print(f"| {k} | {v} |")
    print()
    for k, v in _versions().items():
        print(f"- {k}: {v}")
    if lat:
        print(f"- latency median of {len(lat)} samples: {statistics.median(lat) * 1000:.1f} ms")


def _until(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout} s")
        time.sleep(0.2)


if __name__ == "__main__":
    main()
