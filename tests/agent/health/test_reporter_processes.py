"""Process-level behaviour: kill -9 leaves ``lost``; a broker restart loses nothing it must keep."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent.health.schema import Health
from tests.agent.health.conftest import MakeReporter
from tests.agent.health.helpers import Collector, Gate, retained_status
from tests.brokers import Broker
from tests.fakes import FakeClock
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_kill_9_of_the_agent_leaves_retained_lost(
    broker: Broker, tmp_path: Path, board: Path
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.agent.health.child_reporter",
            str(broker.port),
            str(tmp_path / "state"),
            str(board),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "connected"
        topic = "orchard/v1/child-1/status"
        ready = retained_status(broker.port, topic, state="ready")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        lost = retained_status(broker.port, topic, state="lost")  # raw mosquitto_sub
        assert lost["session"] == ready["session"] == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _seqs(sub: Collector) -> list[int]:
    return [Health.from_json(m.payload).seq for m in sub.on("/health")]


@pytest.mark.slow
def test_broker_restart_mid_stream_keeps_order_and_loses_only_beyond_the_bound(
    broker: Broker, make_reporter: MakeReporter
) -> None:
    bound, while_down = 20, 35
    clock = FakeClock()
    gate = Gate(broker.port)  # lets the test resubscribe before the reporter reconnects
    sub = Collector(broker.port)
    reporter = make_reporter(gate.port, clock=clock, health={"outbox_max": bound})
    reporter.start()
    wait_until(lambda: _seqs(sub) == [1], what="first health")
    for _ in range(9):  # a stream while connected: seq 2..10
        clock.advance(30.0)
        reporter.tick()
    wait_until(lambda: len(_seqs(sub)) == 10 and reporter.outbox.stats().queued == 0, what="10")

    sub.close()
    gate.close_gate()
    wait_until(lambda: not reporter.transport.connected, what="disconnect")
    broker.stop()
    for _ in range(while_down):  # seq 11..45 go to the outbox; the oldest 15 are dropped
        clock.advance(30.0)
        reporter.tick()
    assert reporter.outbox.stats().queued == bound
    assert reporter.outbox.stats().dropped == while_down - bound

    broker.start()
    sub = Collector(broker.port)
    gate.open_gate()
    # Drained means acknowledged too: the subscriber can see the last message before the
    # reporter has its PUBACK and takes it off the outbox (the next health would say queued 1).
    wait_until(
        lambda: len(_seqs(sub)) >= bound and reporter.outbox.stats().queued == 0,
        timeout=15,
        what="the outbox drained",
    )
    clock.advance(30.0)
    reporter.tick()  # one more after reconnect: reports the drop count
    wait_until(lambda: len(_seqs(sub)) == bound + 1, what="post-reconnect health")
    seqs = _seqs(sub)
    assert seqs == list(range(10 + 1 + while_down - bound, 10 + while_down + 2))
    last = Health.from_json(sub.on("/health")[-1].payload)
    assert (last.outbox.dropped, last.outbox.queued) == (while_down - bound, 0)
    session = retained_status(broker.port, "orchard/v1/pi-1/status", state="init")["session"]
    assert session == 2  # the reconnect was a new session
    sub.close()
    gate.close()
