"""Benchmark the canary rollout with many agents on loopback; prints a table.

Real parts: Mosquitto on a free 127.0.0.1 port (the embedded amqtt broker when mosquitto is
absent), and the coordinator side in this process: Registry + HealthIngest, the Catalog and
artifact server over three real round bundles (good, good, bad; trained once with TensorFlow
by ``tests.lifecycle.fleet.write_round``), the MqttPublisher and the RolloutController ticking
every ``--tick`` seconds. Lightweight agents (threads): one paho client per board subscribed to
its retained ``desired``, fetching manifest.json + model.tflite over HTTP (sha256 checked,
rollback from the inactive slot costs no download, as in agent/delivery/service.py), and
publishing validated ``birth`` and ``health`` (``model``, ``delivery``, ``models``) every
``--health`` seconds. Each board makes ``--rate`` labelled predictions per second: accuracy 0.9
on a good version, 0.33 on the bad one (seeded RNG).

Each trial is a good canary (judged, promoted to every board) then a bad one (rolled back);
the good version alternates between rounds 1 and 2 so the fleet always has a previous one::

    .venv/bin/python benchmarks/rollout.py [--trials 5] [--agents 50] [--soak 5] [--min-labels 30]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import logging
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import httpx  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion  # noqa: E402

from agent.delivery.desired import Artifact, Desired  # noqa: E402
from agent.health.schema import (  # noqa: E402
    Birth,
    Delivery,
    Disk,
    Health,
    LiveModel,
    Memory,
    ModelInfo,
    Status,
    Topics,
)
from benchmarks.machine import describe  # noqa: E402
from coordinator.dashboard.server import DashboardServer  # noqa: E402
from coordinator.delivery.catalog import Catalog  # noqa: E402
from coordinator.delivery.publisher import MqttPublisher  # noqa: E402
from coordinator.delivery.server import create_app  # noqa: E402
from coordinator.health.ingest import HealthIngest  # noqa: E402
from coordinator.health.records import DeviceRecord  # noqa: E402
from coordinator.health.registry import Registry  # noqa: E402
from coordinator.health.settings import FleetMqttSettings  # noqa: E402
from coordinator.rollout.controller import RolloutController  # noqa: E402
from coordinator.rollout.policy import group  # noqa: E402
from coordinator.rollout.settings import RolloutSettings  # noqa: E402
from coordinator.rollout.store import Rollout, RolloutStore  # noqa: E402
from coordinator.rollout.view import samples  # noqa: E402
from tests.brokers import MOSQUITTO, Broker, EmbeddedTestBroker, MosquittoBroker  # noqa: E402
from tests.brokers import free_port as _free_port  # noqa: E402

RUN_ID = "run-e2e"  # tests.lifecycle.fleet.RUN_ID
GOOD, BAD = (1, 2), 3  # rounds
ACCURACY = {f"{RUN_ID}.1": 0.9, f"{RUN_ID}.2": 0.9, f"{RUN_ID}.3": 0.33}


def wait_for(what: str, check: Callable[[], bool], timeout: float, poll: float = 0.05) -> float:
    """Poll ``check`` until true; the time it became true. ``TimeoutError`` names ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.time()
        time.sleep(poll)
    raise TimeoutError(f"{what}: not after {timeout:g} s")


# -- the lightweight agent ---------------------------------------------------------------------


@dataclass
class Live:
    """One version's counters on one board (``LiveModel`` once reported)."""

    version: str
    since: float
    predictions: int = 0
    labelled: int = 0
    correct: int = 0

    def report(self) -> LiveModel:
        return LiveModel(
            version=self.version,
            predictions=self.predictions,
            p50_ms=2.0 if self.predictions else None,
            p99_ms=4.0 if self.predictions else None,
            mean_confidence=0.8 if self.predictions else None,
            labelled=self.labelled,
            accuracy=self.correct / self.labelled if self.labelled else None,
            since=self.since,
        )


@dataclass
class Slot:
    artifact: Artifact


@dataclass
class SimAgent:
    device_id: str
    rng: random.Random
    interval_s: float
    v5: bool
    fetch_pool: ThreadPoolExecutor
    http: httpx.Client
    topics: Topics = field(init=False)
    lock: threading.Lock = field(default_factory=threading.Lock)
    active: Slot | None = None
    inactive: Slot | None = None
    lives: list[Live] = field(default_factory=list)  # serving first, then the one before
    taken_seq: int = 0
    delivery: Delivery = field(default_factory=Delivery)
    http_bytes: int = 0
    desired_bytes: int = 0
    fetches: int = 0
    failures: int = 0
    health_seq: int = 0
    started: float = field(default_factory=time.time)
    pending: float = 0.0  # fractional predictions carried to the next step

    def __post_init__(self) -> None:
        self.topics = Topics(self.device_id)
        proto = MQTTProtocolVersion.MQTTv5 if self.v5 else MQTTProtocolVersion.MQTTv311
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.device_id, protocol=proto
        )
        lost = Status(state="lost", session=1, ts=time.time())
        self.client.will_set(self.topics.status, lost.to_json(), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    @property
    def serving(self) -> str | None:
        return self.active.artifact.version if self.active else None

    def connect(self, host: str, port: int) -> None:
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            return
        now = time.time()
        status = Status.from_json(Status(state="ready", session=1, ts=now).to_json())
        birth = Birth.from_json(
            Birth(
                device_id=self.device_id,
                ts=now,
                session=1,
                os="linux",
                arch="aarch64",
                agent_version="bench",
                cpu_count=4,
                memory_total_mb=4096.0,
                health_interval_s=self.interval_s,
                model=self._model_info(),
            ).to_json()
        )
        client.publish(self.topics.status, status.to_json(), qos=1, retain=True)
        client.publish(self.topics.birth, birth.to_json(), qos=1, retain=True)
        client.subscribe(self.topics.desired, qos=1)

    def _model_info(self) -> ModelInfo | None:
        if self.active is None:
            return None
        return ModelInfo(self.active.artifact.version, self.active.artifact.sha256, "int8")

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        payload = bytes(msg.payload)
        with self.lock:
            self.desired_bytes += len(payload)
            if not payload:
                return
            desired = Desired.from_json(payload)
            if desired.seq <= self.taken_seq or desired.model is None:
                return
            self.taken_seq = desired.seq
        self.fetch_pool.submit(self._install, desired)

    def _install(self, desired: Desired) -> None:
        """Stage from the inactive slot or over HTTP (digests checked), then swap slots."""
        want = desired.model
        assert want is not None
        with self.lock:
            if self.active is not None and self.active.artifact.sha256 == want.sha256:
                self.delivery = Delivery(want.version, "idle", 0, None, desired.rollout)
                return
            reuse = self.inactive is not None and self.inactive.artifact.sha256 == want.sha256
            self.delivery = Delivery(want.version, "fetching", 1, None, desired.rollout)
        if not reuse:
            for attempt in range(1, 4):
                try:
                    self._fetch(want)
                    break
                except (httpx.HTTPError, ValueError) as exc:
                    with self.lock:
                        self.failures += 1
                        self.delivery = Delivery(
                            want.version, "failed", attempt, str(exc)[:200], desired.rollout
                        )
                    time.sleep(0.2 * attempt)
            else:
                return
        now = time.time()
        with self.lock:
            if desired.seq != self.taken_seq:  # a newer desired state arrived meanwhile
                return
            self.active, self.inactive = Slot(want), self.active
            before = self.lives[0] if self.lives else None
            self.lives = [Live(want.version, now)] + ([before] if before else [])
            self.delivery = Delivery(want.version, "installed", 1, None, desired.rollout)

    def _fetch(self, want: Artifact) -> None:
        for name, digest, size in (
            ("manifest.json", want.manifest_sha256, want.manifest_size),
            ("model.tflite", want.sha256, want.size),
        ):
            r = self.http.get(f"{want.url}/{name}")
            r.raise_for_status()
            with self.lock:
                self.http_bytes += len(r.content)
            if len(r.content) != size or hashlib.sha256(r.content).hexdigest() != digest:
                raise ValueError(f"{name}: expected sha256 {digest} and {size} bytes")
        with self.lock:
            self.fetches += 1

    def predict(self, dt_s: float, rate: float) -> None:
        """Simulate ``rate`` labelled predictions per second for ``dt_s`` seconds."""
        with self.lock:
            if not self.lives:
                return
            live = self.lives[0]
            self.pending += rate * dt_s
            n, self.pending = int(self.pending), self.pending - int(self.pending)
            p = ACCURACY.get(live.version, 0.9)
            for _ in range(n):
                live.predictions += 1
                live.labelled += 1
                live.correct += self.rng.random() < p

    def report(self) -> None:
        now = time.time()
        with self.lock:
            self.health_seq += 1
            health = Health(
                seq=self.health_seq,
                ts=now,
                uptime_s=now - self.started,
                cpu_pct=12.0,
                load=(0.2, 0.2, 0.2),
                memory=Memory(total_mb=4096.0, available_mb=3000.0, pct=27.0),
                disk=Disk(free_mb=20000.0, pct=30.0),
                rss_mb=60.0,
                model=self._model_info(),
                models=tuple(live.report() for live in self.lives),
                delivery=self.delivery,
            )
        text = health.to_json()
        Health.from_json(text)  # validated, as the agent's reporter does
        self.client.publish(self.topics.health, text, qos=1)


class Fleet:
    """The agents and one driver thread: predictions every 0.1 s, health every interval."""

    def __init__(self, agents: list[SimAgent], rate: float, interval_s: float) -> None:
        self.agents = agents
        self.rate = rate
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-fleet", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        step = 0.1
        n = len(self.agents)
        next_report = [time.monotonic() + self.interval_s * i / n for i in range(n)]
        last = time.monotonic()
        while not self._stop.wait(step):
            now = time.monotonic()
            for i, agent in enumerate(self.agents):
                agent.predict(now - last, self.rate)
                if now >= next_report[i]:
                    next_report[i] += self.interval_s
                    agent.report()
            last = now

    def serving(self, version: str) -> list[str]:
        return [a.device_id for a in self.agents if a.serving == version]

    def bytes(self) -> dict[str, int]:
        return {a.device_id: a.http_bytes + a.desired_bytes for a in self.agents}


# -- the coordinator side ------------------------------------------------------------------------


class SnapshotRegistry:
    """The registry, remembering the first ``devices()`` of each tick: what the policy judged."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.first: list[DeviceRecord] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.registry, name)

    def devices(self) -> list[DeviceRecord]:
        records = self.registry.devices()
        if self.first is None:
            self.first = records
        return records


@dataclass
class Evidence:
    predictions: int
    labelled: int


class Ticker:
    """Ticks the controller every ``tick_s``; records the canary evidence at each decision."""

    def __init__(self, controller: RolloutController, snap: SnapshotRegistry, tick_s: float):
        self.controller = controller
        self.snap = snap
        self.tick_s = tick_s
        self.lock = threading.Lock()
        self.evidence: dict[str, Evidence] = {}
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rollout", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        store = self.controller.store
        while not self._stop.wait(self.tick_s):
            with self.lock:
                before = store.active()
                self.snap.first = None
                try:
                    self.controller.tick()
                except Exception:  # as ModelLifecycle.tick: log, next tick
                    self.errors += 1
                    logging.getLogger("bench").exception("tick failed")
                    continue
                if before is None or before.stage != "canary" or self.snap.first is None:
                    continue
                after = store.rollout(before.id)
                if after is not None and after.stage != "canary":
                    records = {r.device_id: r for r in self.snap.first}
                    stats = group(samples(after, records)[0])
                    self.evidence[before.id] = Evidence(stats.predictions, stats.labelled)


# -- trials ------------------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    store: RolloutStore
    registry: Registry
    controller: RolloutController
    ticker: Ticker
    fleet: Fleet

    def registry_serving(self, version: str) -> int:
        return sum(1 for r in self.registry.devices() if r.model_version == version)

    def settled(self, version: str) -> bool:
        n = len(self.fleet.agents)
        return (
            self.store.active() is None
            and len(self.fleet.serving(version)) == n
            and self.registry_serving(version) == n
        )

    def start(self, round_: int) -> tuple[str, float]:
        a = self.args
        with self.ticker.lock:
            t0 = time.time()
            rid = self.controller.start(
                RUN_ID, round_, canary_pct=a.canary, soak_s=a.soak, min_labels=a.min_labels
            )
        return rid, t0

    def decided(self, rid: str) -> Rollout:
        limit = self.args.soak * 2.0 + 30  # deadline_factor 2, plus slack
        wait_for(f"{rid} decided", lambda: self._stage(rid) != "canary", limit)
        r = self.store.rollout(rid)
        assert r is not None and r.decision is not None
        return r

    def _stage(self, rid: str) -> str | None:
        r = self.store.rollout(rid)
        return r.stage if r else None

    def good(self) -> dict[str, Any]:
        current = self.store.current()
        assert current is not None
        round_ = GOOD[1] if current.version == f"{RUN_ID}.{GOOD[0]}" else GOOD[0]
        version = f"{RUN_ID}.{round_}"
        b0 = self.fleet.bytes()
        rid, t0 = self.start(round_)
        r = self.decided(rid)
        out: dict[str, Any] = {
            "outcome": "promoted" if r.stage == "promoted" else r.decision.outcome,
            "reason": r.decision.reason,
        }
        if r.stage == "promoted":
            t_full = wait_for(f"{version} everywhere", lambda: self.settled(version), 60)
            out["to_full_s"] = t_full - t0
            out["decision_s"] = r.decision.at - t0
        else:
            wait_for(f"{rid} settled", lambda: self.settled(current.version), 60)
        b1 = self.fleet.bytes()
        out["bytes"] = [b1[d] - b0[d] for d in b1]
        return out

    def bad(self) -> dict[str, Any]:
        current = self.store.current()
        assert current is not None
        bad = f"{RUN_ID}.{BAD}"
        # A board still reporting the bad version's metrics from an earlier canary (its "one
        # before" in Health.models): the policy counts them at once (see docs).
        stale = self._reporting(bad)
        b0 = self.fleet.bytes()
        rid, t0 = self.start(BAD)
        r = self.decided(rid)
        assert r.decision is not None
        with self.ticker.lock:  # the tick that decided records its evidence after the store
            evidence = self.ticker.evidence.get(rid)
        out: dict[str, Any] = {
            "outcome": r.decision.outcome,
            "reason": r.decision.reason,
            "decision_s": r.decision.at - t0,
            "evidence": evidence,
            "stale": stale,
        }
        with contextlib.suppress(TimeoutError):
            wait_for(f"{rid} rolled back", lambda: self._stage(rid) != "rolling_back", 60)
        r = self.store.rollout(rid)
        assert r is not None and r.decision is not None
        out["stage"] = r.stage
        if r.finished is not None and r.stage == "rolled_back":
            out["rollback_s"] = r.finished - r.decision.at
        # Every board back on the previous version, seen by the agents and the registry.
        with contextlib.suppress(TimeoutError):
            wait_for(f"{rid} settled", lambda: self.settled(current.version), 30)
        left = self.fleet.serving(bad)
        out["left_on_bad"] = left + [d for d in self._registry_on(bad) if d not in left]
        out["offline"] = list(r.offline)
        within = r.finished is not None and r.finished - r.started <= r.soak_s
        out["success"] = (
            r.decision.outcome == "rollback"
            and r.stage == "rolled_back"
            and within
            and not out["left_on_bad"]
            and not r.offline
        )
        b1 = self.fleet.bytes()
        canary = set(r.canary)
        out["canary_bytes"] = [b1[d] - b0[d] for d in b1 if d in canary]
        out["control_bytes"] = [b1[d] - b0[d] for d in b1 if d not in canary]
        out["canary"] = len(canary)
        return out

    def _reporting(self, version: str) -> list[str]:
        """Boards whose last health has metrics for ``version`` (serving it or not)."""
        return [
            r.device_id
            for r in self.registry.devices()
            if r.health is not None and any(m.version == version for m in r.health.models)
        ]

    def _registry_on(self, version: str) -> list[str]:
        return [r.device_id for r in self.registry.devices() if r.model_version == version]


def make_rounds(runs_dir: Path) -> dict[int, int]:
    """Three round bundles (1, 2 good; 3 trained on shuffled labels); model sizes."""
    from tests.lifecycle.fleet import write_round

    sizes = {}
    for round_ in (*GOOD, BAD):
        directory = runs_dir / RUN_ID / f"round-{round_}"
        if not (directory / "manifest.json").exists():
            write_round(runs_dir, round_, good=round_ != BAD, seed=round_)
        sizes[round_] = (directory / "model.tflite").stat().st_size
    return sizes


def start_broker(workdir: Path) -> Broker:
    broker: Broker = MosquittoBroker(workdir) if Path(MOSQUITTO).exists() else EmbeddedTestBroker()
    broker.start()
    return broker


def med(values: list[float], fmt: str = ".2f") -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    m = statistics.median(vals)
    return f"{m:{fmt}} (min {min(vals):{fmt}}, max {max(vals):{fmt}}, n {len(vals)})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--agents", type=int, default=50)
    p.add_argument("--rate", type=float, default=5.0, help="labelled predictions/s per board")
    p.add_argument("--health", type=float, default=0.5, help="health interval (s)")
    p.add_argument("--soak", type=float, default=5.0)
    p.add_argument("--min-labels", type=int, default=30)
    p.add_argument("--canary", type=float, default=20.0, help="canary percentage")
    p.add_argument("--tick", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--runs", type=Path, help="keep the round bundles here (trained once)")
    p.add_argument("--log", type=Path, help="coordinator log file (default: in the workdir)")
    args = p.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="orchard-rollout-bench-"))
    logging.basicConfig(
        filename=str(args.log or workdir / "bench.log"),
        level=logging.INFO,
        format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s",
    )
    runs_dir = args.runs or workdir / "runs"
    print(f"training the round bundles in {runs_dir} ...", file=sys.stderr, flush=True)
    sizes = make_rounds(runs_dir)

    broker = start_broker(workdir)
    v5 = broker.kind == "mosquitto"
    registry = Registry(workdir / "fleet.sqlite", default_interval_s=args.health)
    ingest = HealthIngest(FleetMqttSettings(host=broker.host, port=broker.port), broker.host,
                          broker.port, registry)  # fmt: skip
    http_port = _free_port()
    catalog = Catalog(runs_dir, f"http://127.0.0.1:{http_port}")
    server = DashboardServer(create_app(catalog), "127.0.0.1", http_port, name="delivery")
    store = RolloutStore(workdir / "rollout.sqlite")
    settings = RolloutSettings(
        after_run="none",
        canary_pct=args.canary,
        soak_s=args.soak,
        min_labels=args.min_labels,
        tick_s=args.tick,
    )
    snap = SnapshotRegistry(registry)
    controller = RolloutController(
        store, cast(Registry, snap), catalog, MqttPublisher(ingest), settings
    )
    ticker = Ticker(controller, snap, args.tick)
    pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="bench-fetch")
    http = httpx.Client(timeout=10)
    rng = random.Random(args.seed)
    agents = [
        SimAgent(f"bench-{i:02d}", random.Random(rng.random()), args.health, v5, pool, http)
        for i in range(args.agents)
    ]
    fleet = Fleet(agents, args.rate, args.health)
    goods: list[dict[str, Any]] = []
    bads: list[dict[str, Any]] = []
    t_begin = time.monotonic()
    try:
        ingest.start()
        if not ingest.wait_subscribed(15):
            raise SystemExit("the health ingest did not subscribe")
        server.start()
        for agent in agents:
            agent.connect(broker.host, broker.port)
        fleet.start()
        wait_for("every board in the registry", lambda: len(registry.devices()) == args.agents, 60)
        ticker.start()
        with ticker.lock:
            controller.deliver(RUN_ID, GOOD[0])
        bench = Bench(args, store, registry, controller, ticker, fleet)
        wait_for("the first model everywhere", lambda: bench.settled(f"{RUN_ID}.{GOOD[0]}"), 60)
        for trial in range(1, args.trials + 1):
            g = bench.good()
            goods.append(g)
            b = bench.bad()
            bads.append(b)
            ev = b["evidence"]
            print(
                f"trial {trial}: good {g['outcome']} full in {g.get('to_full_s', 0):.2f} s; "
                f"bad {b['outcome']}->{b['stage']} decided {b['decision_s']:.2f} s on "
                f"{ev.predictions if ev else '?'} predictions / {ev.labelled if ev else '?'} "
                f"labels, back in {b.get('rollback_s', float('nan')):.2f} s, "
                f"left {len(b['left_on_bad'])}, success {b['success']}"
                f"{' (stale metrics)' if b['stale'] else ''}",
                file=sys.stderr,
                flush=True,
            )
            if g["outcome"] != "promoted":
                print(f"  good canary not promoted: {g['reason']}", file=sys.stderr, flush=True)
            if not b["success"]:
                print(f"  bad canary: {b['reason']}", file=sys.stderr, flush=True)
    finally:
        elapsed = time.monotonic() - t_begin
        ticker.stop()
        fleet.stop()
        for agent in agents:
            agent.stop()
        pool.shutdown(wait=False, cancel_futures=True)
        http.close()
        server.stop()
        ingest.stop()
        broker.stop()
        store.close()
    print_table(args, broker.kind, sizes, goods, bads, elapsed, ticker.errors, agents)
    if args.runs is None:
        shutil.rmtree(runs_dir, ignore_errors=True)
    return 0


def print_table(
    args: argparse.Namespace,
    broker: str,
    sizes: dict[int, int],
    goods: list[dict[str, Any]],
    bads: list[dict[str, Any]],
    elapsed: float,
    tick_errors: int,
    agents: list[SimAgent],
) -> None:
    promoted = [g for g in goods if g["outcome"] == "promoted"]
    fresh = [b for b in bads if not b["stale"]]
    evidence = [b["evidence"] for b in fresh if b["evidence"] is not None]
    good_bytes = [statistics.mean(g["bytes"]) for g in promoted]
    canary_bytes = [statistics.mean(b["canary_bytes"]) for b in bads]
    control_bytes = [statistics.mean(b["control_bytes"]) for b in bads]
    ok = sum(b["success"] for b in bads)
    print(describe("flwr", "paho-mqtt", "httpx", extra=f"broker {broker}"))
    print(
        f"date: {dt.date.today().isoformat()}; {args.agents} agents (threads), "
        f"{args.rate:g} labelled predictions/s each, health every {args.health:g} s; "
        f"canary {args.canary:g}%, soak {args.soak:g} s, min_labels {args.min_labels}, "
        f"tick {args.tick:g} s; {len(goods)} trials in {elapsed:.0f} s"
    )
    print(f"models: good {sizes[GOOD[0]]} / {sizes[GOOD[1]]} B, bad {sizes[BAD]} B (model.tflite)")
    print()
    print("| rollout, median (min, max, n) | value |\n| --- | --- |")
    rows = [
        ("good canary: start -> every board serves it (s)",
         med([g["to_full_s"] for g in promoted])),
        ("good canary: start -> promote decision (s)", med([g["decision_s"] for g in promoted])),
        ("good canary promoted", f"{len(promoted)} of {len(goods)}"),
        ("bad canary (fresh): start -> rollback decision (s)",
         med([b["decision_s"] for b in fresh])),
        ("bad canary (earlier metrics still reported): start -> decision (s)",
         med([b["decision_s"] for b in bads if b["stale"]])),
        ("bad canary (fresh): predictions on it at the decision",
         med([e.predictions for e in evidence], ".0f")),
        ("bad canary (fresh): labels on it at the decision",
         med([e.labelled for e in evidence], ".0f")),
        ("bad canary: decision -> every canary board back (s)",
         med([b.get("rollback_s") for b in bads])),
        ("bytes per board, good trial (mean over boards)", med(good_bytes, ".0f")),
        ("bytes per canary board, bad trial", med(canary_bytes, ".0f")),
        ("bytes per control board, bad trial", med(control_bytes, ".0f")),
        ("bad canary rolled back within the soak, no board left on it", f"{ok} of {len(bads)}"),
    ]  # fmt: skip
    for name, value in rows:
        print(f"| {name} | {value} |")
    failures = sum(a.failures for a in agents)
    print()
    print(f"- fetch failures: {failures}; controller tick errors: {tick_errors}")
    for i, g in enumerate(goods, 1):
        if g["outcome"] != "promoted":
            print(f"- trial {i}: good canary {g['outcome']}: {g['reason']}")
    for i, b in enumerate(bads, 1):
        if not b["success"]:
            print(
                f"- trial {i}: bad canary {b['outcome']} -> {b['stage']}, left on it "
                f"{b['left_on_bad']}, offline {b['offline']}: {b['reason']}"
            )


if __name__ == "__main__":
    raise SystemExit(main())
