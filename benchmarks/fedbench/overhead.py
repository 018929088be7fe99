"""Part ``overhead``: round wall time beyond local training vs Flower's floor.

An Orchard round's ``duration_s`` minus the slowest device's local ``duration_s``, against the
numpy-only app in ``benchmarks/flower_floor`` with the same round shape on the same kind of
SuperLink and plain ``flower-supernode`` processes. Medians of rounds 2.. (round 1 also starts
the trainers). Then the work an Orchard round adds, timed in one process.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.fedbench.common import device_rows, median, prepare, say, table
from benchmarks.fedbench.fleet import FloorFleet, OrchardFleet, StateLog
from coordinator.data import Table, arrays_for
from coordinator.demo import datasets


def local_train_s(record: dict[str, Any]) -> float:
    """The slowest device's local training time in this round (its ``duration_s`` metric)."""
    replies = (record.get("phases") or {}).get("train", {}).get("replies", [])
    times = [
        float(r["metrics"]["duration_s"]) for r in replies if "duration_s" in r.get("metrics", {})
    ]
    return max(times) if times else 0.0


def part_overhead(args: argparse.Namespace, work: Path, results: dict[str, Any]) -> str:
    from agent.federation import status

    n, rounds = args.overhead_devices, args.overhead_rounds
    prepared, parts = prepare(n, "iid", args.seed)
    say(f"overhead: Orchard, {n} agents x {rounds} rounds (FedAvg, 1 local epoch, int8) ...")
    with OrchardFleet(work / "overhead-orchard", prepared, parts, args.seed) as fleet:
        settings = fleet.settings(num_server_rounds=rounds, local_epochs=1, learning_rate=args.lr)
        with StateLog([status.path_for(d.root) for d in fleet.devices], every_s=0.1) as states:
            _, ours = fleet.run(settings, f"overhead {n} agents")
    params = int(ours.get("model", {}).get("parameters", 2000))
    say(f"overhead: Flower's floor, {n} SuperNodes x {rounds} rounds, {params} float32 ...")
    with FloorFleet(work / "overhead-floor", n) as floor_fleet:
        floor = floor_fleet.run(rounds, params)
    evaluating = states.spans({"evaluating", "exporting"})
    training = states.spans({"training"})
    results["overhead"] = {
        "orchard": ours,
        "floor": floor,
        "devices": n,
        "evaluate_span_s": evaluating,
        "train_span_s": training,
    }

    def per_round(r: dict[str, Any], f: dict[str, Any]) -> dict[str, float]:
        beyond = r["duration_s"] - local_train_s(r)
        ev = evaluating.get(int(r["round"]), 0.0)
        return {
            "wall": r["duration_s"],
            "local": local_train_s(r),
            "span": training.get(int(r["round"]), 0.0),
            "beyond": beyond,
            "ev": ev,
            "rest": beyond - ev,
            "floor": f["duration_s"],
            "ratio": beyond / f["duration_s"],
            "ratio_rest": (beyond - ev) / f["duration_s"],
        }

    figures = [
        per_round(r, f) for r, f in zip(ours["rounds"], floor["history"]["rounds"], strict=False)
    ]
    later = figures[1:] or figures
    labels = [
        ("wall", "Orchard round wall (train + evaluate + central eval + checkpoint)", "s"),
        ("local", "slowest device's local training (its `duration_s` metric)", "s"),
        ("span", "first device starts training -> last one ends (trainers share a CPU)", "s"),
        ("beyond", "**Orchard beyond local training**", "s"),
        ("ev", "of which: devices evaluate + export TFLite (first start -> last end)", "s"),
        ("rest", "of which: the rest (Flower, ClientApps, trainer socket, coordinator)", "s"),
        ("floor", "Flower floor round wall (numpy app, train + evaluate)", "s"),
        ("ratio", "**ratio: Orchard beyond training / floor**", "x"),
        ("ratio_rest", "ratio without the devices' evaluate + export", "x"),
    ]
    rows = [
        [label, f"{median([f[key] for f in later]):.2f}{unit}", f"{figures[0][key]:.2f}{unit}"]
        for key, label, unit in labels
    ]
    text = table(
        f"Round wall time beyond local training vs Flower's floor ({n} devices on loopback, "
        f"median of rounds 2..{rounds})",
        ["measure", "median (rounds 2..)", "round 1"],
        rows,
        "Target: ratio <= 1.2x. Both rounds are a train phase then an evaluate phase over all "
        "devices with FedAvg; Orchard's also includes the devices' evaluate + TFLite export and "
        "the coordinator's central evaluation + checkpoint (.keras, .tflite, manifest, plots). "
        "Round 1 also starts every trainer (TensorFlow import) and fetches the FAB.",
    )
    return text + "\n" + components(prepared, parts, results)


def components(prepared: datasets.Prepared, parts: list[Table], results: dict[str, Any]) -> str:
    """In-process timings of the work an Orchard round adds, to explain the overhead."""
    from coordinator.federation.checkpoint import GlobalModel, Holdout
    from models.export import export_tflite
    from models.training import TrainSettings, fit

    spec = prepared.spec
    xv, yv = arrays_for(spec, prepared.validation)
    holdout = Holdout(xv.astype(np.float32), yv, real=True)
    x, y = device_rows(prepared, parts[:1])
    model = GlobalModel(spec)
    fit(model.model, spec, (x, y), TrainSettings(epochs=1))  # adapt statistics, warm up
    assert yv is not None
    held = (xv[:256].astype(np.float32), yv[:256])
    times: dict[str, list[float]] = {}

    def timed(name: str, fn: Callable[[], object]) -> None:
        t = time.perf_counter()
        fn()
        times.setdefault(name, []).append(time.perf_counter() - t)

    with tempfile.TemporaryDirectory() as tmp:
        for i in range(3):
            timed(
                "fit, 1 epoch (a warm trainer's model)",
                lambda: fit(model.model, spec, (x, y), TrainSettings(epochs=1)),
            )
            timed("fit, 3 epochs", lambda: fit(model.model, spec, (x, y), TrainSettings(epochs=3)))
            timed("coordinator central evaluation", lambda: model.central(holdout))
            timed(
                "coordinator checkpoint (.keras + int8 .tflite + manifest)",
                functools.partial(
                    model.checkpoint,
                    Path(tmp) / f"round-{i}",
                    name="bench",
                    version=f"b.{i}",
                    quantization="int8",
                    holdout=holdout,
                    metrics={"round": i},
                ),
            )
            timed(
                "device export after evaluate (int8 .tflite, parity checked)",
                functools.partial(
                    export_tflite,
                    model.model,
                    spec,
                    Path(tmp) / f"dev-{i}",
                    quantization="int8",
                    representative=x[:512],
                    held=held,
                    name="bench",
                    version=f"d.{i}",
                ),
            )
    results["components"] = times
    one, three = (
        median(times["fit, 1 epoch (a warm trainer's model)"]),
        median(times["fit, 3 epochs"]),
    )
    rows = [[name, f"{median(v):.2f}"] for name, v in times.items()]
    rows.append(
        [
            "=> fit's fixed cost per call (tracing etc.), from 1 vs 3 epochs",
            f"{one - (three - one) / 2:.2f}",
        ]
    )
    return table(
        "What an Orchard round adds, timed in one process (median of 3, one device's rows)",
        ["step", "s"],
        rows,
        "The devices' exports run in the evaluate phase, one per device; the trainers are all "
        "pinned to the same CPU on this box (cpu_quota_pct 50 % of 2 cores), so they queue.",
    )
