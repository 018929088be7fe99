"""Agent-local fault scenarios (issue 7): real processes, real SQLite, real files, real SIGKILL.

Each ``run_*`` function builds its own world under ``workdir``, injects one fault, checks the
promise (``AssertionError`` naming what broke) and returns figures. The tests of this package
call them with short parameters; ``benchmarks/chaos.py`` runs long ones and prints the figures.

    run_swap_kills(workdir, steps=None)       the agent SIGKILLed at every step of a model swap
    run_store_kills(workdir, kills=8)         a store writer SIGKILLed while retention runs
    run_store_disk_full(workdir, cycles=2)    the store's files cannot grow (RLIMIT_FSIZE)
    run_store_enospc(workdir)                 a really full filesystem (tmpfs, user namespace)
    run_agent_disk_full(workdir, seconds=3)   the whole agent on a store that cannot grow
    run_sensor_faults(workdir, seconds=3)     the whole agent with a hanging and a raising driver
    run_clock_jumps(workdir, ticks=60)        sampler, store and health on a stepping wall clock

The store scenarios live in ``tests.faults.store_scenarios`` and the processes (the agent, its
plugin drivers, the children and their output) in ``tests.faults.agent_procs``; both are
re-exported here. Only the clock is fake (``tests.fakes.FakeClock``).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.faults import agent_procs, store_scenarios
from tests.faults.agent_procs import (
    SYNTHETIC,
    Agent,
    Role,
    agent_config,
    export_bundles,
    main,
    stop_process,
)
from tests.faults.store_scenarios import (
    enospc_available,
    read_seqs_ts,
    run_agent_disk_full,
    run_store_disk_full,
    run_store_enospc,
    run_store_kills,
)
from tests.waiting import wait_until

__all__ = [
    "ROLES",
    "enospc_available",
    "main",
    "run_agent_disk_full",
    "run_clock_jumps",
    "run_sensor_faults",
    "run_store_disk_full",
    "run_store_enospc",
    "run_store_kills",
    "run_swap_kills",
    "swap_steps",
]


# -- 1. SIGKILL at every step of a model swap ----------------------------------------------------


def swap_steps(workdir: Path, old: Path, new: Path) -> list[tuple[str, bool]]:
    """Every step name ``ModelSlots.install`` passes, and whether ACTIVE names the new slot then."""
    from agent.slots import ACTIVE_FILE, ModelSlots

    root = workdir / "models"
    slots = ModelSlots(root)
    slots.install(old)
    before = (root / ACTIVE_FILE).read_text()
    seen: list[tuple[str, bool]] = []
    slots._step_hook = lambda name: seen.append((name, (root / ACTIVE_FILE).read_text() != before))
    slots.install(new)
    shutil.rmtree(root)
    return seen


def _active_is_complete(models: Path, version: str) -> None:
    """What ACTIVE names loads completely (size, sha256, tensors, golden samples) as ``version``."""
    from agent.slots import ACTIVE_FILE
    from models.runtime import Predictor

    slot = (models / ACTIVE_FILE).read_text().strip()
    predictor = Predictor.load(models / slot)  # raises on any partial or foreign file
    assert predictor.manifest.version == version, (
        f"{slot} holds version {predictor.manifest.version}; expected {version}"
    )


def _serves(agent: Agent, version: str, golden: Sequence[Any]) -> float:
    """The agent answers predictions with ``version``; returns seconds from start to answer."""
    started = time.monotonic()
    health = agent.up(model=True)
    assert health["model"]["version"] == version, f"serving {health['model']}; expected {version}"
    status, body = agent.predict(golden)
    assert status == 200 and body["model_version"] == version, (status, body)
    return time.monotonic() - started


def run_swap_kills(
    workdir: Path,
    steps: Sequence[str] | None = None,
    *,
    old: Path | None = None,
    new: Path | None = None,
    rounds: int = 1,
) -> dict[str, Any]:
    """Kill the agent at each swap step (all of them by default), ``rounds`` times over.

    One models dir, one agent per kill: each agent first proves it serves the model the
    previous kill left (HTTP 200 on ``/api/predict``), then takes the candidate from its inbox
    and dies at the next step. The disk is checked between runs; a plain ``orchard-agent run``
    ends the chain and installs the candidate the last kill left in the inbox.
    """
    from agent.slots import INCOMING_DIR, ModelSlots
    from models.manifest import MANIFEST_FILE, Manifest

    if old is None or new is None:
        old, new = export_bundles(workdir)
    old_v, new_v = (Manifest.load(b / MANIFEST_FILE).version for b in (old, new))
    assert old_v != new_v, "the old and the new model need different versions"
    golden = Manifest.load(new / MANIFEST_FILE).golden_inputs
    known = swap_steps(workdir / "discover", old, new)
    wanted = [s for s in known if steps is None or s[0] in steps]
    assert steps is None or len(wanted) == len(steps), f"unknown steps; known: {known}"
    config, port = agent_config(workdir / "agent", extra="[models]\nlatency_bound_ms = 1000\n")
    models, pending = workdir / "agent" / "state" / "models", workdir / "pending"
    inbox = models / "inbox"
    ModelSlots(models).install(old)
    serving, times, kills = old_v, [], []
    for _round in range(rounds):
        for step, activates in wanted:
            candidate = new if serving == old_v else old
            shutil.rmtree(pending, ignore_errors=True)
            shutil.copytree(candidate, pending)
            with Agent(config, port, kill_at=step) as agent:
                times.append(_serves(agent, serving, golden))
                inbox.mkdir(parents=True, exist_ok=True)
                pending.rename(inbox / "candidate")  # delivered atomically, as a trainer does
                code = agent.proc.wait(60)
                assert code == -signal.SIGKILL, f"not killed at {step!r} (exit {code})"
            version = Manifest.load(candidate / MANIFEST_FILE).version
            serving = version if activates else serving
            _active_is_complete(models, serving)
            kills.append(step)
            (inbox / "candidate").rename(pending)  # redelivered to the next agent, not now
    pending.rename(inbox / "candidate")  # the last kill's leftover: a plain agent installs it
    final = Manifest.load(inbox / "candidate" / MANIFEST_FILE).version
    with Agent(config, port, plugins=False) as agent:
        times.append(_serves(agent, serving, golden))
        wait_until(lambda: agent.up()["model"]["version"] == final, 60, f"version {final} to serve")
        status, body = agent.predict(golden)
        assert status == 200 and body["model_version"] == final, (status, body)
        assert stop_process(agent.proc) == 0, agent.out.tail()
    assert not (models / INCOMING_DIR).exists() and not (models / "rejected").exists()
    return {
        "steps": [s for s, _ in known],
        "killed_at": kills,
        "kills": len(kills),
        "restarts": len(kills) + 1,
        "max_start_to_200_s": round(max(times), 3),
    }


# -- 2. a sensor driver that hangs or raises, in the real agent ----------------------------------

FAULTY_SENSORS = (
    SYNTHETIC
    + '[sensors.stuck]\ndriver = "hang"\ninterval_s = 0.1\ntimeout_s = 0.2\ntrace = "{trace}"\n'
    + '[sensors.broken]\ndriver = "boom"\ninterval_s = 0.1\n'
    + "[sampling]\nmax_consecutive_errors = 3\nretry_disabled_s = 0.5\n"
)


def run_sensor_faults(workdir: Path, seconds: float = 3.0) -> dict[str, Any]:
    """The agent with three sensors: ``env`` (synthetic, 20 Hz), ``stuck`` (blocks forever in
    ``read(2)``), ``broken`` (raises). Both faulty ones end ``disabled`` and are reported in
    ``/healthz`` and ``/metrics``; ``env`` keeps its rate into the store; the hung read is never
    doubled up, even across retries; SIGTERM still stops the agent promptly with exit 0."""
    trace = workdir / "hang-trace.txt"
    config, port = agent_config(workdir / "agent", FAULTY_SENSORS.format(trace=trace))
    db = workdir / "agent" / "state" / "store.db"
    with Agent(config, port) as agent:
        expected = {"env": "ok", "stuck": "disabled", "broken": "disabled"}
        wait_until(lambda: agent.up()["sensors"] == expected, 30, f"sensor states {expected}")
        rows_before = len(read_seqs_ts(db))
        read_before = agent.metric("orchard_sensor_readings_accepted_total", sensor="env")
        threading.Event().wait(seconds)  # the figure is a rate over this span
        health = agent.up()
        assert health["sensors"] == expected, health
        read_after = agent.metric("orchard_sensor_readings_accepted_total", sensor="env")
        rows_after = len(read_seqs_ts(db))
        assert read_after - read_before >= 5 * seconds, (read_before, read_after)
        assert rows_after - rows_before >= 5 * seconds, (rows_before, rows_after)
        errors = {s: agent.metric("orchard_sensor_errors_total", sensor=s) for s in expected}
        assert errors["env"] == 0 and errors["stuck"] >= 3 and errors["broken"] >= 3, errors
        assert agent.metric("orchard_sensor_up", sensor="stuck", state="disabled") == 0
        agent.out.wait_for("sensor stuck: disabled", 5)
        agent.out.wait_for("driver broken is broken", 5)
        for name in ("stuck", "broken"):  # reported as events (MQTT health, when configured)
            agent.out.wait_for(f"event sensor_failed {{'sensor': '{name}', 'state': 'disabled'", 5)
        assert trace.read_text().count("read") == 1, "a second read of a hung driver started"
        started = time.monotonic()
        code = stop_process(agent.proc)
        stop_s = time.monotonic() - started
        assert code == 0, f"exit {code}:\n{agent.out.tail()}"
    return {
        "env_hz": round((read_after - read_before) / seconds, 1),
        "errors": errors,
        "stop_s": round(stop_s, 2),
    }


# -- 3. wall-clock steps -------------------------------------------------------------------------


def run_clock_jumps(
    workdir: Path,
    ticks: int = 60,
    *,
    jumps: Mapping[int, float] | None = None,
    mqtt_port: int | None = None,
    interval_s: float = 5.0,
    max_age_s: float = 600.0,
) -> dict[str, Any]:
    """Sampler, SQLite store and health reporter (to a real Mosquitto) on one wall clock that
    jumps at the given ticks (default: back an hour at a third, forward two hours at two
    thirds). A tick is one second of elapsed time: both clocks move, then the wall clock
    jumps. Returns figures; the tests assert on them (see ``test_clock_faults``)."""
    from agent.config import MqttSettings
    from agent.health.reporter import HealthReporter
    from agent.health.settings import HealthSettings
    from agent.sensors import Sampler, build_sensors
    from agent.store import SqliteStore, StoreSettings
    from tests.agent.health.helpers import Collector, fake_pi
    from tests.fakes import FakeClock

    jumps = dict(jumps) if jumps is not None else {ticks // 3: -3600.0, 2 * ticks // 3: 7200.0}
    broker = None
    if mqtt_port is None:
        from tests.brokers import MosquittoBroker

        broker = MosquittoBroker(workdir / "mosquitto")
        (workdir / "mosquitto").mkdir(parents=True, exist_ok=True)
        broker.start()
        mqtt_port = broker.port
    wall, mono = FakeClock(), FakeClock(start=1000.0)
    store = SqliteStore(
        StoreSettings(path=workdir / "store.db", max_age_s=max_age_s, retention_interval_s=0),
        clock=wall,
        monotonic=mono,
    )
    sampler = Sampler(
        build_sensors({"env": {"driver": "synthetic", "interval_s": 1.0}}, clock=wall),
        store.append,
        clock=wall,
    )
    mqtt = MqttSettings.from_mapping(
        {"host": "127.0.0.1", "port": mqtt_port, "health_interval_s": interval_s}
    )
    health = HealthSettings(
        outbox_path=workdir / "outbox.db",
        facts_root=fake_pi(workdir / "board"),
        sample_s=3600.0,
        min_change_gap_s=3600.0,  # the test ticks; changes do not add messages
    )
    device = f"clock-{os.getpid()}"
    collector = Collector(mqtt_port, (f"orchard/v1/{device}/health",))
    reporter = HealthReporter(mqtt, device, health=health, clock=wall)
    per_tick: list[int] = []
    sent_at: list[int] = []
    rows: list[int] = []
    try:
        for tick in range(ticks):  # the worker is not started yet: every message stays queued
            wall.advance(1.0)
            mono.advance(1.0)
            if tick in jumps:
                wall.advance(jumps[tick])
            per_tick.append(len(sampler.poll_once()))
            queued = reporter.outbox.stats().queued
            reporter.tick()
            if reporter.outbox.stats().queued > queued:
                sent_at.append(tick)
            rows.append(store.stats().rows)
        aged_rows = rows[-1]
        wall.advance(max_age_s + 60)  # time passes (both clocks): the oldest rows expire
        mono.advance(max_age_s + 60)
        after_gap = len(sampler.poll_once())
        expired_rows = store.stats().rows
        queued = reporter.outbox.stats().queued
        reporter.start()  # connects, adds one forced message, sends everything in order
        seqs = wait_until(lambda: _seqs(collector, queued + 1), 30, "every health message")
        status = sampler.status()["env"]
    finally:
        reporter.stop(timeout=5)
        collector.close()
        sampler.stop()
        store.close()
        if broker is not None:
            broker.stop()
    gaps = [b - a for a, b in itertools.pairwise(sent_at)]
    return {
        "ticks": ticks,
        "jumps": jumps,
        "samples_per_tick": per_tick,
        "ticks_without_sample": sum(1 for n in per_tick if n == 0),
        "max_samples_in_a_tick": max(per_tick),
        "sample_after_gap": after_gap,
        "accepted": status.accepted,
        "rejected": dict(status.rejected),
        "rate_hz": status.rate_hz,
        "rows": rows,
        "rows_before_expiry": aged_rows,
        "rows_after_expiry": expired_rows,
        "health_ticks": sent_at,
        "max_health_gap_ticks": max(gaps, default=ticks),
        "seqs": seqs,
    }


def _seqs(collector: Any, count: int) -> list[int] | None:
    seqs = [json.loads(m.payload)["seq"] for m in collector.on("/health")]
    return seqs if len(seqs) >= count else None


# -- children: every role, for ``python -m tests.faults.agent_scenarios ROLE ...`` -------------

ROLES: dict[str, Role] = {**agent_procs.ROLES, **store_scenarios.ROLES}

if __name__ == "__main__":
    main(sys.argv[1:], ROLES)
