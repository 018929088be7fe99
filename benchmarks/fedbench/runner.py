"""Federated benchmarks on loopback (docs/federated.md); one Markdown table per part.

Parts (``--parts``, comma separated, all by default):

- ``accuracy``: federated vs centralised accuracy on the same data (synthetic classify, the
  same train/validation split). Centralised = one Keras model (``models.training.fit``) on the
  pooled rows the devices train on, evaluated on the coordinator's validation set, median of 3
  seeds, as many epochs as a device gets in the whole run (rounds x local epochs). Federated =
  N real agents (IID and Dirichlet 0.3) x (FedAvg, FedProx), the coordinator's central accuracy
  after the last round (and the best round).
- ``overhead``: round wall time beyond local training (an Orchard round's ``duration_s`` minus
  the slowest device's local ``duration_s``) vs Flower's floor: the numpy-only app in
  ``benchmarks/flower_floor`` with the same round shape on the same kind of SuperLink and plain
  ``flower-supernode`` processes. Medians of rounds 2.. (round 1 also starts the trainers).
- ``bytes``: bytes per round per device, from the runs' ``history.json``.
- ``inference``: ``POST /api/predict`` p50/p99 on one agent, one sequential keep-alive client,
  idle vs while its trainer trains a round (classified by the trainer's status file).
- ``simulation``: Flower's Simulation Engine (Ray) with 100 virtual devices running the floor
  app: wall time per round, peak RSS/PSS of the SuperLink's process tree.

    .venv/bin/python benchmarks/federated.py [--parts accuracy,overhead,...] [--rounds 20]
        [--devices 5] [--overhead-devices 10] [--quick] [--json out.json] [--workdir /tmp/x]

Every process it starts (SuperLinks, agents, SuperNodes, trainers, Ray) is stopped before it
returns; processes left under the work directory are listed and terminated by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

from benchmarks.fedbench.accuracy import part_accuracy
from benchmarks.fedbench.common import machine, say
from benchmarks.fedbench.inference import part_inference
from benchmarks.fedbench.overhead import part_overhead
from benchmarks.fedbench.simulation import part_simulation
from benchmarks.fedbench.traffic import bytes_table


# -- cleanup ------------------------------------------------------------------------------
def leftovers(root: Path) -> list[psutil.Process]:
    """Processes whose command line or environment mentions ``root`` (ours, by construction)."""
    mine = str(root)
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            text = " ".join(proc.info["cmdline"] or [])
            if mine in text or any(mine in v for v in proc.environ().values()):
                found.append(proc)
    return found


def sweep(root: Path) -> None:
    procs = leftovers(root)
    for proc in procs:
        say(f"left over: pid {proc.pid} {' '.join(proc.cmdline()[:3])}; terminating")
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=10)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()


@contextlib.contextmanager
def workdir(path: str | None, keep: bool) -> Iterator[Path]:
    root = Path(path or tempfile.mkdtemp(prefix="orchard-fedbench-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    try:
        yield root
    finally:
        sweep(root)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


# -- main ---------------------------------------------------------------------------------
PARTS: dict[str, Callable[[argparse.Namespace, Path, dict[str, Any]], str]] = {
    "accuracy": part_accuracy,
    "overhead": part_overhead,
    "inference": part_inference,
    "simulation": part_simulation,
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--parts",
        default="accuracy,overhead,bytes,inference,simulation",
        help="comma separated: accuracy, overhead, bytes, inference, simulation",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 3 devices, 3 rounds, IID only, fewer requests",
    )
    p.add_argument("--rounds", type=int, default=20, help="accuracy: rounds per run (20)")
    p.add_argument("--devices", type=int, default=5, help="accuracy: devices (5)")
    p.add_argument("--local-epochs", type=int, default=1, help="accuracy: local epochs/round")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate (Adam), both sides")
    p.add_argument("--mu", type=float, default=0.1, help="FedProx proximal mu")
    p.add_argument("--partitions", default="iid,dirichlet:0.3")
    p.add_argument("--strategies", default="fedavg,fedprox")
    p.add_argument("--overhead-devices", type=int, default=10)
    p.add_argument("--overhead-rounds", type=int, default=4)
    p.add_argument("--inference-runs", type=int, default=3, help="inference: loaded runs")
    p.add_argument("--inference-epochs", type=int, default=30, help="inference: local epochs")
    p.add_argument("--idle-seconds", type=float, default=20.0, help="inference: idle window")
    p.add_argument(
        "--reserve-agent-cpu",
        action="store_true",
        help="inference: the device runs with training.reserve_agent_cpu = true",
    )
    p.add_argument("--sim-devices", type=int, default=100)
    p.add_argument("--sim-rounds", type=int, default=5)
    p.add_argument("--sim-array-size", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", help="work directory (default: a new one under /tmp)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--json", help="also write every measurement (and run histories) here")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.devices, args.partitions = 3, 3, "iid"
        args.overhead_devices, args.overhead_rounds = 3, 3
        args.inference_runs, args.inference_epochs, args.idle_seconds = 1, 10, 5.0
        args.sim_devices, args.sim_rounds = 20, 3
    args.partitions = [s for s in args.partitions.split(",") if s]
    args.strategies = [s for s in args.strategies.split(",") if s]
    args.parts = [s.strip() for s in args.parts.split(",") if s.strip()]
    unknown = sorted(set(args.parts) - {*PARTS, "bytes"})
    if unknown:
        p.error(f"expected parts among {', '.join([*PARTS, 'bytes'])}. Received: {unknown}")
    for key in (
        "rounds",
        "devices",
        "local_epochs",
        "overhead_devices",
        "overhead_rounds",
        "inference_runs",
        "sim_devices",
        "sim_rounds",
    ):
        if getattr(args, key) < 1:
            p.error(f"expected a positive integer. Received: {key}={getattr(args, key)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    print(machine(), flush=True)
    results: dict[str, Any] = {
        "machine": machine(),
        "args": {k: v for k, v in vars(args).items() if isinstance(v, str | int | float | list)},
    }
    failed = []
    with workdir(args.workdir, args.keep) as root:
        say(f"work directory {root}")
        for name in args.parts:
            if name == "bytes":
                continue
            started = time.monotonic()
            try:
                results.setdefault("tables", {})[name] = PARTS[name](args, root, results)
            except Exception as exc:  # one part failing must not lose the others' figures
                failed.append(name)
                say(f"{name} failed: {type(exc).__name__}: {exc}")
                print(f"\n### {name}: FAILED ({type(exc).__name__}: {exc})", flush=True)
            results.setdefault("seconds", {})[name] = round(time.monotonic() - started, 1)
            say(f"{name} took {time.monotonic() - started:.0f} s")
            if args.json:  # after every part, so a long run keeps what it measured so far
                Path(args.json).write_text(json.dumps(results, indent=1, default=str))
        if "bytes" in args.parts and ("overhead" in results or "accuracy_runs" in results):
            results.setdefault("tables", {})["bytes"] = bytes_table(results)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 1 if failed else 0
