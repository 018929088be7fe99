"""Health over MQTT on a real ``orchard-agent run`` while the network fails (Mosquitto real).

- ``broker_outage``: Mosquitto stopped for ``down_s``; health waits in the SQLite outbox
  (bounded, drop-oldest, counted) and arrives in order after;
- ``link_loss``: the agent's link cut or black-holed while the broker stays up; the broker's
  Last Will says ``lost``, the next session ``ready``.

Shared by tests/faults/test_broker_faults.py and benchmarks/chaos.py (through net_scenarios.py).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator.demo.fleet import Device, wait_until
from tests.agent.health.helpers import Collector, fake_pi, retained_status
from tests.brokers import MosquittoBroker
from tests.faults.net_procs import Progress, quiet
from tests.netproxy import TcpProxy

KEEPALIVE_S = 5  # the smallest [mqtt] keepalive_s the agent accepts
SAMPLE_S = 0.25  # [health] sample_s: a health message is due at the first sample past interval


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
    progress: Progress = quiet,
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
    progress: Progress = quiet,
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
