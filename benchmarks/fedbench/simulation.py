"""Part ``simulation``: Flower's Simulation Engine (Ray) running the floor app.

Virtual devices (100 by default): wall time per round, peak RSS/PSS of the SuperLink's
process tree.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.fedbench.common import median, say, table
from benchmarks.fedbench.fleet import run_floor_app
from benchmarks.machine import version
from coordinator.demo.fleet import free_port
from coordinator.federation.superlink import SuperLink, SuperLinkSettings


class SimulationLink(SuperLink):
    """A SuperLink in simulation mode: its SuperExec runs ``flwr-simulation`` (Ray)."""

    def command(self) -> list[str]:
        return [*super().command(), "--simulation"]


class TreeMemory:
    """Peak summed RSS and PSS of a process and all its descendants, sampled every second."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak_rss = self.peak_pss = 0.0
        self.peak_procs = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            rss = pss = 0.0
            procs = [self.root, *self.root.children(recursive=True)]
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    info = p.memory_full_info()
                    rss += info.rss
                    pss += getattr(info, "pss", info.rss)
            self.peak_rss = max(self.peak_rss, rss / 2**20)
            self.peak_pss = max(self.peak_pss, pss / 2**20)
            self.peak_procs = max(self.peak_procs, len(procs))
            self.stop.wait(1.0)


def part_simulation(args: argparse.Namespace, work: Path, results: dict[str, Any]) -> str:
    n, rounds = args.sim_devices, args.sim_rounds
    link = SimulationLink(SuperLinkSettings(port=free_port(), workdir=work / "simulation"))
    say(f"simulation: {n} virtual devices x {rounds} rounds (Ray) ...")
    link.start()
    try:
        assert link.proc is not None
        mem = TreeMemory(link.proc.pid)
        mem.thread.start()
        t0 = time.monotonic()
        floor = run_floor_app(
            link,
            link.workdir,
            rounds=rounds,
            nodes=n,
            array_size=args.sim_array_size,
            timeout=1800.0,
            federation_config=f"num-supernodes={n} client-resources-num-cpus=1",
        )
        wall = time.monotonic() - t0
        mem.stop.set()
        mem.thread.join(5)
    finally:
        link.stop()
    results["simulation"] = {
        **floor,
        "wall_s": wall,
        "peak_rss_mb": mem.peak_rss,
        "peak_pss_mb": mem.peak_pss,
    }
    rnds = floor["history"]["rounds"]
    later = rnds[1:] or rnds
    rows: list[list[Any]] = [
        ["virtual devices / rounds", f"{n} / {rounds}"],
        [
            "replies per round (train / evaluate)",
            f"{median([r['train_replies'] for r in rnds]):.0f} / "
            f"{median([r['evaluate_replies'] for r in rnds]):.0f}",
        ],
        ["round 1 wall (includes starting Ray)", f"{rnds[0]['duration_s']:.2f} s"],
        [
            f"median round wall, rounds 2..{rounds}",
            f"{median([r['duration_s'] for r in later]):.2f} s",
        ],
        [
            "of which train / evaluate phase",
            f"{median([r['train_s'] for r in later]):.2f} / "
            f"{median([r['evaluate_s'] for r in later]):.2f} s",
        ],
        ["submit to finished", f"{wall:.1f} s"],
        ["peak RSS, SuperLink process tree (sum)", f"{mem.peak_rss:,.0f} MB"],
        ["peak PSS, same tree (shared pages counted once)", f"{mem.peak_pss:,.0f} MB"],
        ["peak processes in the tree", mem.peak_procs],
    ]
    return table(
        f"Flower Simulation Engine: {n} virtual devices, numpy ClientApp "
        f"({args.sim_array_size} float32), 1 CPU per ClientApp",
        ["measure", "value"],
        rows,
        "`flower-superlink --simulation` + `flwr run benchmarks/flower_floor --federation-config "
        f"'num-supernodes={n} client-resources-num-cpus=1'` (Ray {version('ray')}).",
    )
