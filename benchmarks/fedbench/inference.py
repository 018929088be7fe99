"""Part ``inference``: ``POST /api/predict`` p50/p99 on one agent, idle vs while it trains.

One sequential keep-alive client; requests made during a run are classified by the trainer's
state (its status file) at their start.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.fedbench.common import median, pct, prepare, say, table
from benchmarks.fedbench.fleet import OrchardFleet, StateLog
from coordinator.data import arrays_for
from coordinator.demo.fleet import wait_until


class Hammer:
    """One sequential keep-alive client; each request's start time and latency in ms."""

    def __init__(self, port: int, body: bytes) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.body = body
        self.samples: list[tuple[float, float]] = []
        self.errors = 0

    def once(self) -> None:
        t = time.perf_counter()
        try:
            self.conn.request(
                "POST", "/api/predict", self.body, {"Content-Type": "application/json"}
            )
            resp = self.conn.getresponse()
            resp.read()
            ok = resp.status == 200
        except (OSError, http.client.HTTPException):
            self.conn.close()
            ok = False
        if ok:
            self.samples.append((t, (time.perf_counter() - t) * 1000))
        else:
            self.errors += 1

    def until(self, done: Callable[[], bool]) -> None:
        while not done():
            self.once()

    def for_seconds(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.once()


def background(work: Callable[[], object], hammer: Hammer, join_s: float = 60.0) -> None:
    """Run ``work`` in a thread while ``hammer`` sends requests; re-raise its error."""
    done = threading.Event()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as exc:  # re-raised below, once the hammer has stopped
            failure.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    hammer.until(done.is_set)
    thread.join(join_s)
    if failure:
        raise failure[0]


def part_inference(args: argparse.Namespace, work: Path, results: dict[str, Any]) -> str:
    """Idle windows and 1-round runs alternate, so slow changes in background load hit both."""
    from agent.federation import status

    prepared, parts = prepare(1, "iid", args.seed)
    x, _ = arrays_for(prepared.spec, prepared.validation)
    body = json.dumps({"features": [float(v) for v in x[0]]}).encode()
    idle_windows: list[list[float]] = []
    loaded: list[tuple[float, float]] = []
    training = {"reserve_agent_cpu": args.reserve_agent_cpu}
    with OrchardFleet(work / "inference", prepared, parts, args.seed, training) as fleet:
        dev = fleet.devices[0]
        say("inference: one device, a 1-round run to install a model ...")
        run_id, _ = fleet.run(fleet.settings(num_server_rounds=1, min_devices=1), "install")
        wait_until(
            "the device to serve the run's model",
            lambda: (
                (h := dev.healthz()) is not None
                and h.model is not None
                and h.model.version.startswith(run_id)
            ),
            120.0,
            poll_s=0.5,
        )
        hammer = Hammer(dev.http_port, body)
        for _ in range(300):
            hammer.once()  # warm-up
        settings = fleet.settings(
            num_server_rounds=1, min_devices=1, local_epochs=args.inference_epochs
        )
        round_s: list[float] = []

        def loaded_run(label: str) -> None:
            _, history = fleet.run(settings, label)
            round_s.append(float(history["rounds"][0]["duration_s"]))

        trainer_status = status.path_for(dev.root)
        states = StateLog([trainer_status])
        with states:
            for k in range(args.inference_runs + 1):
                wait_until(
                    "the trainer to go idle",
                    lambda: status.read(trainer_status).state in ("idle", "stopped"),
                    120.0,
                )
                say(f"inference: idle window {k + 1}, {args.idle_seconds:g} s ...")
                hammer.samples = []
                hammer.for_seconds(args.idle_seconds)
                idle_windows.append([ms for _, ms in hammer.samples])
                if k == args.inference_runs:
                    break
                say(
                    f"inference: run {k + 1}/{args.inference_runs}, 1 round of "
                    f"{args.inference_epochs} local epochs, under load ..."
                )
                hammer.samples = []
                background(functools.partial(loaded_run, f"inference load {k + 1}"), hammer)
                loaded += hammer.samples
    idle = [ms for window in idle_windows for ms in window]
    by_state: dict[str, list[float]] = {}
    for t, ms in loaded:
        by_state.setdefault(states.state_at(t), []).append(ms)
    busy = [ms for s, v in by_state.items() if s not in ("idle", "stopped") for ms in v]
    results["inference"] = {
        "idle_windows": idle_windows,
        "by_state": by_state,
        "errors": hammer.errors,
        "round_s": round_s,
        "reserve_agent_cpu": args.reserve_agent_cpu,
    }

    def row(name: str, values: list[float]) -> list[Any]:
        ratio = pct(values, 0.99) / pct(idle, 0.99)
        return [
            name,
            len(values),
            f"{pct(values, 0.5):.3f}",
            f"{pct(values, 0.99):.3f}",
            f"{ratio:.2f}x",
        ]

    evaluating = by_state.get("evaluating", []) + by_state.get("exporting", [])
    rows = [row(f"idle window {i + 1}", w) for i, w in enumerate(idle_windows)] + [
        row("**idle, all windows (the reference)**", idle),
        row("**while the trainer trains (state=training)**", by_state.get("training", [])),
        row("while it evaluates/exports (evaluating, exporting)", evaluating),
        row("any trainer activity", busy),
        row(
            "during the run, trainer idle (ClientApp start-up, server work)",
            by_state.get("idle", []),
        ),
    ]
    return table(
        "POST /api/predict on one device, idle vs while its trainer runs (one sequential client)",
        ["when", "requests", "p50 ms", "p99 ms", "p99 / idle p99"],
        rows,
        f"Target: p99 while training <= 1.5x idle p99. {hammer.errors} failed requests. The "
        "trainer runs as the agent spawns it off systemd: nice, SCHED_IDLE, pinned to "
        "cpu_quota_pct (50 %) of the CPUs; the SuperLink and ServerApp share the same 2 cores. "
        f"training.reserve_agent_cpu = {str(args.reserve_agent_cpu).lower()}. Round wall time "
        f"of the loaded runs ({args.inference_epochs} local epochs): "
        + ", ".join(f"{v:.1f} s" for v in round_s)
        + f" (median {median(round_s):.1f} s).",
    )
