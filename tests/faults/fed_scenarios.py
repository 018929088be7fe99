"""Federation faults on a real fleet (``net_procs.fed_fleet``), predictions checked throughout.

- ``superlink_kills``: the SuperLink SIGKILLed mid-round and restarted on the same address and
  database; the SuperNodes rejoin and a new run trains on every device;
- ``trainer_hang``: a trainer frozen in round 1 (over its time budget); round 2 must work.

Shared by tests/faults/test_federation_faults.py and benchmarks/chaos.py (through
net_scenarios.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from agent.federation import status as trainer_status
from agent.federation.messages import ErrorCode
from coordinator.demo.fleet import Device, wait_until
from coordinator.federation.submit import follow, submit
from coordinator.federation.superlink import SuperLink
from tests.faults.net_procs import FedFleet, Predictions, Progress, kill_superlink, quiet

OVER_BUDGET = int(ErrorCode.OVER_BUDGET)


def _bad(statuses: list[int]) -> bool:
    return not statuses or set(statuses) != {200}


def _summary(statuses: list[int]) -> str:
    counts = {code: statuses.count(code) for code in sorted(set(statuses))}
    return ", ".join(f"{n} x {'no answer' if c < 0 else c}" for c, n in counts.items()) or "none"


def _trainer(device: Device) -> trainer_status.TrainerStatus:
    return trainer_status.read(trainer_status.path_for(device.root))


def _supernodes(fleet: FedFleet, state: str) -> bool:
    return all(
        (d.health() or {}).get("federation", {}).get("supernode") == state for d in fleet.devices
    )


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
    fleet: FedFleet, *, kills: int = 1, settle_s: float = 180.0, progress: Progress = quiet
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


def trainer_hang(fleet: FedFleet, *, progress: Progress = quiet) -> HangResult:
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
