"""Network and federation faults on real processes, shared by tests/faults and benchmarks/chaos.py.

Each scenario drives real programs (``orchard-agent run``, Mosquitto, Flower's SuperLink and
SuperNodes) through one fault whose length or count is a parameter, and returns what it saw.
The tests call them with CI-sized parameters and assert on the result; the chaos bench calls
them with long ones and prints the figures. Only the network (tests/netproxy.py) and the board
(a fake device tree and thermal files) are simulated.

    broker_outage(work, broker, down_s=12, bound=4)      # Mosquitto stopped, outbox bounded
    link_loss(work, broker, mode="blackhole")            # agent cut off, broker up: Last Will
    with fed_fleet(work, bundle) as fleet:
        superlink_kills(fleet, kills=1)                  # SIGKILL mid-round, restart, new run
        trainer_hang(fleet)                              # over time in round 1, round 2 works
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from agent.federation import status as trainer_status
from agent.federation.messages import ErrorCode
from coordinator.demo import datasets
from coordinator.demo.fleet import Device, wait_connected, wait_until
from coordinator.demo.partition import Partitioning, split
from coordinator.federation.runconfig import RunSettings
from coordinator.federation.submit import follow, submit
from coordinator.federation.superlink import SuperLink, SuperLinkSettings
from tests.agent.health.helpers import Collector, fake_pi, retained_status
from tests.brokers import MosquittoBroker, free_port
from tests.netproxy import TcpProxy

KEEPALIVE_S = 5  # the smallest [mqtt] keepalive_s the agent accepts
SAMPLE_S = 0.25  # [health] sample_s: a health message is due at the first sample past interval
OVER_BUDGET = int(ErrorCode.OVER_BUDGET)
PREDICT_BODY = json.dumps({"features": [21.0, 45.0, 1013.0, 150.0, 600.0]}).encode()
Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    """The default progress sink: tests stay silent, the bench passes ``print``."""


# -- health over MQTT -------------------------------------------------------------------------


def health_agent(root: Path, mqtt_port: int, *, bound: int, interval_s: float) -> Device:
    """An ``orchard-agent run`` (no federation) reporting health to ``mqtt_port`` on a fake Pi."""
    board = fake_pi(root / "board")  # 48 °C, not throttled: the state stays "ready"
    device = Device(0, "fault-1", root / "agent")
    device.configure(
        superlink="127.0.0.1:9",
        sensor={"driver": "synthetic", "interval_s": 1.0},
        extra={
            "federation": {"enabled": False},
            "mqtt": {
                "host": "127.0.0.1",
                "port": mqtt_port,
                "keepalive_s": KEEPALIVE_S,
                "health_interval_s": interval_s,
            },
            "health": {
                "outbox_max": bound,
                "sample_s": SAMPLE_S,
                "reconnect_min_s": 1.0,
                "reconnect_max_s": 2.0,
                "facts_root": str(board),
            },
        },
    )
    return device


def health_of(sub: Collector) -> list[dict[str, Any]]:
    """Every ``health`` payload the subscriber got, parsed as plain JSON (not the agent's codec)."""
    return [json.loads(m.payload) for m in sub.on("/health")]


def seqs_of(sub: Collector) -> list[int]:
    return [int(h["seq"]) for h in health_of(sub)]


def outbox_rows(path: Path) -> tuple[list[int], int]:
    """The health seqs queued in the agent's SQLite outbox, oldest first, and its drop counter."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        rows = db.execute("SELECT topic, payload FROM outbox ORDER BY id").fetchall()
        (dropped,) = db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
    seqs = [int(json.loads(p)["seq"]) for t, p in rows if str(t).endswith("/health")]
    return seqs, int(dropped)


def _after_next(sub: Collector, timeout: float = 15.0) -> None:
    """Return just after a new health message arrived: the fault then hits an idle link."""
    count = len(seqs_of(sub))
    wait_until("the next health message", lambda: len(seqs_of(sub)) > count, timeout, 0.01)


def order(seqs: list[int]) -> tuple[bool, list[int]]:
    """Strictly increasing? And which seqs between the first and the last never came."""
    increasing = all(a < b for a, b in itertools.pairwise(seqs))
    missing = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs)) if seqs else []
    return increasing, missing


@dataclass(frozen=True)
class OutageResult:
    down_s: float
    bound: int
    before: list[int]  # seqs the subscriber got before the broker stopped
    after: list[int]  # seqs it got once the broker was back, in arrival order
    queued: list[int]  # seqs in the SQLite outbox at the end of the outage
    queued_max: int  # the most messages the outbox held while the broker was down
    dropped: int  # the outbox's drop-oldest counter after the drain
    reported_dropped: int  # what the first health composed after the drain said
    drain_s: float  # link back -> outbox empty
    agent_alive: bool
    interval_s: float = 1.0

    @property
    def seqs(self) -> list[int]:
        return self.before + self.after

    def problems(self) -> list[str]:
        """The promises this outage broke (empty: all kept)."""
        out = []
        increasing, missing = order(self.seqs)
        expected = min(self.bound, int(self.down_s / (self.interval_s + SAMPLE_S)) - 2)
        kept = [s for s in self.queued if s in set(self.after)]
        first_lost = self.before[-1] + 1
        if not self.agent_alive:
            out.append("the agent process died")
        if not expected <= self.queued_max <= self.bound:
            out.append(f"outbox held {self.queued_max}; expected {expected}..{self.bound}")
        if not increasing:
            out.append(f"seqs out of order: {self.seqs}")
        # the outbox's rows at the end of the outage come first once the link is back (with a
        # tight bound its oldest may be dropped in the second the agent takes to reconnect)
        if not kept or kept != self.queued[len(self.queued) - len(kept) :]:
            out.append(f"queued {self.queued} not delivered (got {self.after})")
        elif self.after[: len(kept)] != kept:
            out.append(f"queued {kept} not delivered first (got {self.after})")
        if self.queued_max < self.bound and (self.dropped or missing):
            out.append(f"outbox never full, yet dropped {self.dropped}, missing {missing}")
        if missing != list(range(first_lost, first_lost + self.dropped)):
            out.append(f"missing {missing} are not the {self.dropped} oldest after {first_lost}")
        if self.reported_dropped != self.dropped:
            out.append(f"health reported dropped={self.reported_dropped}, outbox {self.dropped}")
        return out


def broker_outage(
    work: Path,
    broker: MosquittoBroker,
    *,
    down_s: float,
    bound: int = 1000,
    interval_s: float = 1.0,
    progress: Progress = _quiet,
) -> OutageResult:
    """Stop Mosquitto for ``down_s`` while the agent reports health every ``interval_s``."""
    topics = ("orchard/v1/fault-1/#",)
    with TcpProxy(("127.0.0.1", broker.port)) as proxy:
        device = health_agent(work, proxy.port, bound=bound, interval_s=interval_s)
        outbox = device.root / "health-outbox.db"
        sub = Collector(broker.port, topics=topics)
        device.start()
        try:
            wait_until("three health messages", lambda: len(seqs_of(sub)) >= 3, 90)
            _after_next(sub)
            broker.stop()
            proxy.cut()  # when the broker is back, hold the agent off until we listen again
            before = seqs_of(sub)
            sub.close()
            progress(f"broker stopped after seq {before[-1]}; down for {down_s:g} s")
            queued_max, end = 0, time.monotonic() + down_s
            while (left := end - time.monotonic()) > 0:
                queued_max = max(queued_max, len(outbox_rows(outbox)[0]))
                time.sleep(min(0.5, left))  # sampling the outbox, not synchronising
            queued, _ = outbox_rows(outbox)
            queued_max = max(queued_max, len(queued))
            broker.start()
            sub = Collector(broker.port, topics=topics)
            proxy.restore()
            back = time.monotonic()
            wait_until("the outbox to drain", lambda: not outbox_rows(outbox)[0], 60 + down_s)
            drain_s = time.monotonic() - back
            dropped = outbox_rows(outbox)[1]
            seen = max(seqs_of(sub), default=0)
            wait_until(
                "a health composed after the drain", lambda: max(seqs_of(sub)) > seen + 1, 15
            )
            fresh = next(h for h in health_of(sub) if h["seq"] > seen + 1)
            progress(f"broker back; outbox drained in {drain_s:.1f} s")
            return OutageResult(
                down_s,
                bound,
                before,
                seqs_of(sub),
                queued,
                queued_max,
                dropped,
                int(fresh["outbox"]["dropped"]),
                drain_s,
                device.alive(),
                interval_s,
            )
        finally:
            sub.close()
            device.stop()


@dataclass(frozen=True)
class LinkLossResult:
    mode: str
    down_s: float
    ready_before: dict[str, Any]
    lost: dict[str, Any]
    ready_after: dict[str, Any]
    lost_after_s: float  # link failure -> retained "lost" on the broker
    ready_after_s: float  # link restored -> retained "ready" again
    seqs: list[int]  # every health seq a subscriber on the broker got, in arrival order
    queued_max: int

    def problems(self) -> list[str]:
        out = []
        session = self.ready_before["session"]
        if self.lost["session"] != session:
            out.append(f"Last Will for session {self.lost['session']}, expected {session}")
        if self.mode == "blackhole" and self.lost_after_s < KEEPALIVE_S:
            out.append(f"'lost' after {self.lost_after_s:.1f} s, before the keepalive expired")
        if self.ready_after["session"] != session + 1:
            out.append(f"'ready' again with session {self.ready_after['session']}")
        if self.queued_max < 1:
            out.append("nothing was queued while cut off")
        increasing, missing = order(self.seqs)
        if not increasing or missing:
            out.append(f"health out of order or missing {missing}: {self.seqs}")
        return out


def link_loss(
    work: Path,
    broker: MosquittoBroker,
    *,
    mode: str,
    down_s: float = 0.0,
    progress: Progress = _quiet,
) -> LinkLossResult:
    """Cut or black-hole the agent's link for at least ``down_s`` while the broker stays up."""
    if mode not in ("cut", "blackhole"):
        raise ValueError(f"expected mode 'cut' or 'blackhole'. Received: mode={mode!r}")
    topic = "orchard/v1/fault-1/status"
    with TcpProxy(("127.0.0.1", broker.port)) as proxy:
        device = health_agent(work, proxy.port, bound=1000, interval_s=1.0)
        outbox = device.root / "health-outbox.db"
        sub = Collector(broker.port, topics=("orchard/v1/fault-1/#",))
        device.start()
        try:
            ready = retained_status(broker.port, topic, state="ready", timeout=90)
            _after_next(sub)
            proxy.cut() if mode == "cut" else proxy.blackhole()
            failed = time.monotonic()
            lost = retained_status(broker.port, topic, state="lost", timeout=8 * KEEPALIVE_S)
            lost_after_s = time.monotonic() - failed
            progress(f"link {mode}: retained 'lost' after {lost_after_s:.1f} s")
            queued_max, end = 0, failed + down_s
            while (left := end - time.monotonic()) > 0:
                queued_max = max(queued_max, len(outbox_rows(outbox)[0]))
                time.sleep(min(0.5, left))
            queued_max = max(queued_max, len(outbox_rows(outbox)[0]))
            proxy.restore()
            restored = time.monotonic()
            down = restored - failed
            again = retained_status(broker.port, topic, state="ready", timeout=30)
            ready_after_s = time.monotonic() - restored
            wait_until("the outbox to drain", lambda: not outbox_rows(outbox)[0], 60 + down_s)
            _after_next(sub)
            return LinkLossResult(
                mode,
                down,
                ready,
                lost,
                again,
                lost_after_s,
                ready_after_s,
                seqs_of(sub),
                queued_max,
            )
        finally:
            sub.close()
            device.stop()


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
                extra={"training": {"max_seconds": victim_max_seconds}} if victim else {},
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


def _bad(statuses: list[int]) -> bool:
    return not statuses or set(statuses) != {200}


def _summary(statuses: list[int]) -> str:
    counts = {code: statuses.count(code) for code in sorted(set(statuses))}
    return ", ".join(f"{n} x {'no answer' if c < 0 else c}" for c, n in counts.items()) or "none"


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


def _trainer(device: Device) -> trainer_status.TrainerStatus:
    return trainer_status.read(trainer_status.path_for(device.root))


def _supernodes(fleet: FedFleet, state: str) -> bool:
    return all(
        (d.health() or {}).get("federation", {}).get("supernode") == state for d in fleet.devices
    )


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


@dataclass
class KillRecord:
    run_id: str  # the run that was mid-round
    orphans: int  # SuperLink children still alive 20 s after the kill
    down_s: float  # kill -> new SuperLink answering
    rejoin_s: float  # new SuperLink answering -> every SuperNode connected again
    killed_at: float  # time.monotonic() of the kill
    run_status: str = ""  # what the restarted SuperLink ends up saying of the interrupted run
    settled_s: float | None = None  # kill -> that run no longer "running"


@dataclass
class KillResult:
    kills: list[KillRecord]
    history: dict[str, Any]  # the run submitted after the last kill
    answered: set[int]  # nodes whose train reply in that run was not an error
    nodes: set[int]  # node ids the devices report
    statuses: dict[str, list[int]] = field(default_factory=dict)  # predictions per device

    def problems(self) -> list[str]:
        out = [f"predictions on {d}: {_summary(s)}" for d, s in self.statuses.items() if _bad(s)]
        for i, kill in enumerate(self.kills, 1):
            if kill.orphans:
                out.append(f"kill {i}: {kill.orphans} SuperLink children outlived it")
            if not kill.run_status.startswith("finished"):
                out.append(f"kill {i}: interrupted run {kill.run_id} still {kill.run_status!r}")
        if self.history.get("status") != "completed":
            out.append(f"the run after the kills ended {self.history.get('status')!r}")
        if self.answered != self.nodes:
            out.append(f"trained nodes {sorted(self.answered)} != devices {sorted(self.nodes)}")
        return out


def superlink_kills(
    fleet: FedFleet, *, kills: int = 1, settle_s: float = 180.0, progress: Progress = _quiet
) -> KillResult:
    """SIGKILL the SuperLink mid-round ``kills`` times; restart it each time on the same address
    and database; then a new run must complete with every device.

    Flower does not resume an interrupted run: the restarted SuperLink fails it once the dead
    ServerApp's heartbeat expires; each run's final status is awaited up to ``settle_s`` after
    its kill (overlapping the new run).
    """
    records = []
    with Predictions(fleet.devices) as load:
        for i in range(kills):
            settings = fleet.settings(num_server_rounds=2)
            run_id = submit(fleet.link, settings, fleet.work / f"submit-kill-{i}")

            def mid_round(run: str = run_id) -> bool:
                return any(
                    _trainer(d).state == "training" and _trainer(d).run_id == run
                    for d in fleet.devices
                )

            wait_until(f"run {run_id} to be mid-round", mid_round, 240, 0.05)
            killed = time.monotonic()
            orphans = kill_superlink(fleet.link)
            wait_until("the SuperNodes to notice", lambda: _supernodes(fleet, "backoff"), 60)
            fleet.link.start()
            up = time.monotonic()
            wait_until("the SuperNodes to rejoin", lambda: _supernodes(fleet, "connected"), 120)
            rejoined = time.monotonic()
            records.append(KillRecord(run_id, orphans, up - killed, rejoined - up, killed))
            progress(
                f"kill {i + 1}/{kills}: down {up - killed:.1f} s, SuperNodes rejoined in "
                f"{rejoined - up:.1f} s"
            )
        settings = fleet.settings()
        run_id = submit(fleet.link, settings, fleet.work / "submit-after-kills")
        history = follow(fleet.link, run_id, settings, timeout=400)
        progress(f"run {run_id} after the kills: {history.get('status')}")
    for record in records:
        record.run_status, record.settled_s = _settle(fleet.link, record, settle_s)
    train = history["rounds"][0]["phases"]["train"]["replies"]
    answered = {int(r["node_id"]) for r in train if "error" not in r}
    nodes = {fleet.node_of(d) for d in fleet.devices}
    return KillResult(records, history, answered, nodes, load.statuses)


def _settle(link: SuperLink, record: KillRecord, settle_s: float) -> tuple[str, float | None]:
    """The interrupted run's status once it is no longer running (or at the deadline)."""
    deadline = record.killed_at + settle_s
    while True:
        state = str(link.run_status(record.run_id).get("status", ""))
        if state.startswith("finished"):
            return state, time.monotonic() - record.killed_at
        if time.monotonic() >= deadline:
            return state, None
        time.sleep(2.0)  # each probe is a `flwr ls` process; bounded by the deadline


@dataclass
class HangResult:
    history: dict[str, Any]
    victim_node: int
    replies: list[dict[str, Any]]  # the victim's train reply in each round
    outcomes: list[str]  # trainer last_outcome values seen on the victim's /healthz, in order
    trainer: dict[str, Any]  # the victim's /healthz trainer section at the end
    statuses: dict[str, list[int]]
    max_seconds: float

    def problems(self) -> list[str]:
        out = [f"predictions on {d}: {_summary(s)}" for d, s in self.statuses.items() if _bad(s)]
        rounds = self.history.get("rounds", [])
        if self.history.get("status") != "completed" or len(rounds) != 2:
            out.append(f"run ended {self.history.get('status')!r} after {len(rounds)} round(s)")
        if len(self.replies) != 2:
            return [*out, f"victim replies: {self.replies}"]
        first, second = self.replies
        error = first.get("error") or {}
        if error.get("code") != OVER_BUDGET or f"max_seconds {self.max_seconds:g}" not in str(
            error.get("reason")
        ):
            out.append(f"round 1 did not report the time budget: {first}")
        if "over_time" not in self.outcomes:
            out.append(f"/healthz never said over_time: {self.outcomes}")
        if "error" in second:
            out.append(f"round 2 failed too: {second}")
        if self.outcomes[-1:] != ["ok"] or self.trainer.get("failures_in_row") != 0:
            out.append(f"the trainer did not recover: {self.trainer}")
        if int(self.trainer.get("kills") or 0) < 1:
            out.append(f"no watchdog kill recorded: {self.trainer}")
        return out


def trainer_hang(fleet: FedFleet, *, progress: Progress = _quiet) -> HangResult:
    """Freeze the victim's trainer (SIGSTOP) in round 1 of a two-round run.

    A frozen trainer is the deterministic form of "this round takes too long": the watchdog
    must kill it after ``max_seconds`` (+ grace), the round must report it, and round 2 must
    train normally on a fresh trainer.
    """
    victim = fleet.victim
    node = fleet.node_of(victim)
    settings = fleet.settings(num_server_rounds=2, round_timeout=fleet.victim_max_seconds + 90)
    outcomes: list[str] = []

    def watch() -> None:
        last = (victim.health() or {}).get("trainer", {}).get("last_outcome")
        if last and (not outcomes or outcomes[-1] != last):
            outcomes.append(str(last))

    with Predictions(fleet.devices) as load:
        watch()
        run_id = submit(fleet.link, settings, fleet.work / "submit-hang")

        def training() -> int | None:
            s = _trainer(victim)
            busy = s.state == "training" and s.run_id == run_id and s.round == 1
            return s.pid if busy else None

        pid = wait_until("the victim to train round 1", training, 240, 0.02)
        os.kill(pid, signal.SIGSTOP)
        try:
            if _trainer(victim).state != "training":
                raise AssertionError("round 1 finished before the trainer was frozen")
            progress(f"trainer pid {pid} frozen in round 1")
            with ThreadPoolExecutor(1) as pool:  # follow the run; watch /healthz meanwhile
                future = pool.submit(follow, fleet.link, run_id, settings, timeout=600)
                while True:
                    watch()
                    try:
                        history = future.result(timeout=0.5)
                        break
                    except FutureTimeout:
                        continue
        finally:
            with contextlib.suppress(OSError):  # never leave a frozen process behind
                os.kill(pid, signal.SIGCONT)
        watch()
    replies = []
    for record in history.get("rounds", []):
        mine = [r for r in record["phases"]["train"]["replies"] if int(r["node_id"]) == node]
        replies.extend(mine or [{"node_id": node, "error": {"code": -1, "reason": "no reply"}}])
    trainer = (victim.health() or {}).get("trainer") or {}
    return HangResult(
        history, node, replies, outcomes, trainer, load.statuses, fleet.victim_max_seconds
    )
