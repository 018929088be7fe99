"""Federated benchmarks on loopback (DESIGN §4, issue 4 item 6); one Markdown table per part.

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
import functools
import http.client
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))  # benchmarks.machine
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from benchmarks.machine import describe, version  # noqa: E402
from coordinator.data import Table, arrays_for  # noqa: E402
from coordinator.demo import datasets  # noqa: E402
from coordinator.demo.fleet import Device, free_port, wait_connected, wait_until  # noqa: E402
from coordinator.demo.partition import Partitioning, split  # noqa: E402
from coordinator.federation.runconfig import RunSettings  # noqa: E402
from coordinator.federation.submit import follow, submit  # noqa: E402
from coordinator.federation.superlink import (  # noqa: E402
    CONNECTION,
    SuperLink,
    SuperLinkSettings,
    flower_env,
)

FLOOR_APP = _HERE / "flower_floor"
BIN = Path(sys.executable).parent
VAL_FRACTION = 0.2  # agent.trainer.data.load: each device validates on its newest 20 %
Say = Callable[[str], None]


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- machine, tables ----------------------------------------------------------------------
def machine() -> str:
    return describe(
        "flwr", "ray", ("tensorflow", "tensorflow-cpu"), "keras", "ai-edge-litert", "numpy"
    )


def table(title: str, header: list[str], rows: list[list[Any]], notes: str = "") -> str:
    lines = [f"\n### {title}\n", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    if notes:
        lines += ["", notes]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q * 100)) if values else float("nan")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- an Orchard fleet: SuperLink + N real agents ------------------------------------------
class OrchardFleet:
    """A SuperLink and one real ``orchard-agent run`` per partition, as the demo starts them.

    The agents' live sensors read once an hour, so the stores hold just the seeded partition
    and the federation trains on the same rows the centralised baseline pools.
    """

    def __init__(
        self,
        work: Path,
        prepared: datasets.Prepared,
        parts: list[Table],
        seed: int,
        training: dict[str, Any] | None = None,
    ):
        self.work = work
        self.training = training or {}  # agent.toml [training] overrides
        self.prepared = prepared
        self.parts = parts
        self.seed = seed
        self.link = SuperLink(SuperLinkSettings(port=free_port(), workdir=work / "superlink"))
        self.devices = [
            Device(i, f"bench-{i + 1}", work / "devices" / f"bench-{i + 1}")
            for i in range(len(parts))
        ]
        self.validation = work / "validation.csv"
        self._stack = ExitStack()

    def __enter__(self) -> OrchardFleet:
        datasets.write_validation(self.validation, self.prepared.validation)
        try:
            self.link.start()
            self._stack.callback(self.link.stop)
            for device, part in zip(self.devices, self.parts, strict=True):
                sensor = {
                    "driver": "synthetic",
                    "interval_s": 3600.0,
                    "seed": self.seed,
                    "device_index": device.index,
                }
                device.configure(
                    superlink=self.link.settings.address,
                    sensor=sensor,
                    extra={"training": self.training},
                )
                device.seed(part)
                device.start()
                self._stack.callback(device.stop)
            wait_connected(self.devices, 240.0 + 20 * len(self.devices))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def settings(self, **changes: Any) -> RunSettings:
        base = RunSettings(
            min_devices=len(self.devices),
            round_timeout=600.0,
            wait_for_devices=120.0,
            model_spec=json.dumps(self.prepared.spec.to_dict()),
            model_name="bench-mlp",
            out_dir=str(self.work / "runs"),
            validation=str(self.validation),
            seed=self.seed,
        )
        return base.replace(**changes)

    def run(self, settings: RunSettings, label: str) -> tuple[str, dict[str, Any]]:
        run_id = submit(self.link, settings, self.work / "superlink")

        def line(r: dict[str, Any]) -> None:
            central = (r.get("central") or {}).get("metric")
            say(
                f"{label} round {r['round']}/{settings.num_server_rounds}: central "
                f"{'-' if central is None else f'{central:.4f}'}, {r['duration_s']:.1f} s, "
                f"{r.get('failures', 0)} failures"
            )

        return run_id, follow(self.link, run_id, settings, on_round=line)


def prepare(devices: int, partition: str, seed: int) -> tuple[datasets.Prepared, list[Table]]:
    prepared = datasets.prepare("synthetic", "classify", devices, seed=seed)
    parts = split(prepared.train, devices, Partitioning.parse(partition), seed=seed)
    return prepared, parts


# -- part 1: accuracy ---------------------------------------------------------------------
def device_rows(prepared: datasets.Prepared, parts: list[Table]) -> tuple[np.ndarray, np.ndarray]:
    """The rows the devices train on (each partition less its newest 20 %), pooled."""
    xs, ys = [], []
    for part in parts:
        x, y = arrays_for(prepared.spec, part)
        assert y is not None
        keep = len(x) - max(1, int(len(x) * VAL_FRACTION))
        xs.append(x[:keep])
        ys.append(y[:keep])
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys)


def centralised(
    prepared: datasets.Prepared, parts: list[Table], epochs: int, lr: float, seeds: int = 3
) -> list[float]:
    import keras

    from models import families
    from models.training import TrainConfig, evaluate, fit

    x, y = device_rows(prepared, parts)
    xv, yv = arrays_for(prepared.spec, prepared.validation)
    out = []
    for seed in range(seeds):
        keras.utils.set_random_seed(seed)
        model = families.build(prepared.spec)
        fit(
            model,
            prepared.spec,
            (x, y),
            TrainConfig(epochs=epochs, batch_size=32, learning_rate=lr, seed=seed),
        )
        out.append(evaluate(model, prepared.spec, (xv.astype(np.float32), yv))["accuracy"])
    return out


def part_accuracy(args: argparse.Namespace, work: Path, results: dict[str, Any]) -> str:
    rows = []
    runs = results.setdefault("accuracy_runs", [])
    mix: list[str] = []
    epochs = args.rounds * args.local_epochs
    for partition in args.partitions:
        prepared, parts = prepare(args.devices, partition, args.seed)
        say(
            f"accuracy: {partition}, rows per device {[len(p) for p in parts]}; "
            f"centralised baseline ({epochs} epochs x 3 seeds) ..."
        )
        labels = prepared.spec.labels
        mix.append(
            f"{partition}: "
            + "; ".join(
                "/".join(str(int(np.sum(part.labels == name))) for name in labels) for part in parts
            )
            + f" ({'/'.join(labels)} rows per device)"
        )
        cent = centralised(prepared, parts, epochs, args.lr)
        c_med = median(cent)
        say(f"accuracy: centralised {partition}: {cent}")
        with OrchardFleet(
            work / f"acc-{partition.replace(':', '')}", prepared, parts, args.seed
        ) as fleet:
            for strategy in args.strategies:
                settings = fleet.settings(
                    num_server_rounds=args.rounds,
                    strategy=strategy,
                    local_epochs=args.local_epochs,
                    learning_rate=args.lr,
                    proximal_mu=args.mu,
                    quantization="float32",
                )
                t0 = time.monotonic()
                run_id, history = fleet.run(settings, f"{partition} {strategy}")
                wall = time.monotonic() - t0
                curve = [
                    float((r.get("central") or {}).get("metric", float("nan")))
                    for r in history["rounds"]
                ]
                reach = next((i + 1 for i, a in enumerate(curve) if a >= 0.97 * c_med), None)
                runs.append(
                    {
                        "partition": partition,
                        "strategy": strategy,
                        "run_id": run_id,
                        "centralised": cent,
                        "curve": curve,
                        "wall_s": wall,
                        "history": history,
                    }
                )
                rows.append(
                    [
                        partition,
                        strategy,
                        f"{c_med:.4f}",
                        f"{curve[-1]:.4f}",
                        f"{curve[-1] / c_med:.1%}",
                        f"{max(curve):.4f} (r{int(np.argmax(curve)) + 1})",
                        "-" if reach is None else reach,
                        len(curve),
                        f"{median([r['duration_s'] for r in history['rounds']]):.1f}",
                    ]
                )
    return table(
        f"Federated vs centralised accuracy ({args.devices} devices, {args.local_epochs} local "
        f"epoch(s)/round, lr {args.lr}, FedProx mu {args.mu})",
        [
            "partition",
            "strategy",
            "centralised acc (median of 3)",
            "federated final acc",
            "final / centralised",
            "best acc (round)",
            "first round >= 97 %",
            "rounds",
            "median round s",
        ],
        rows,
        "Central accuracy = the coordinator's validation set (the same rows for both). "
        "Targets: >= 97 % of centralised (IID), >= 90 % under Dirichlet 0.3 (better strategy). "
        "Label mix: " + " | ".join(mix),
    )


# -- part 2 and 3: round overhead vs Flower's floor, bytes ---------------------------------
class FloorFleet:
    """A SuperLink and N plain ``flower-supernode`` processes for the numpy-only floor app."""

    def __init__(self, work: Path, nodes: int) -> None:
        self.work = work
        self.link = SuperLink(SuperLinkSettings(port=free_port(), workdir=work / "superlink"))
        self.nodes = nodes
        self.procs: list[subprocess.Popen[bytes]] = []
        self._stack = ExitStack()

    def __enter__(self) -> FloorFleet:
        try:
            self.link.start()
            self._stack.callback(self.link.stop)
            for i in range(self.nodes):
                root = self.work / f"node-{i}"
                (root / "flwr-home").mkdir(parents=True, exist_ok=True)
                cmd = [
                    str(BIN / "flower-supernode"),
                    "--insecure",
                    "--superlink",
                    self.link.settings.address,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(free_port()),
                    "--node-config",
                    f"partition-id={i}",
                ]
                with (root / "supernode.log").open("ab") as log:
                    proc = subprocess.Popen(
                        cmd,
                        cwd=root,
                        env=flower_env(root / "flwr-home"),
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                self.procs.append(proc)
                self._stack.callback(_terminate, proc)
            wait_until(f"{self.nodes} SuperNodes to connect", self._connected, 180.0, poll_s=1.0)
        except BaseException:
            self._stack.close()
            raise
        return self

    def _connected(self) -> bool:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"flower-supernode exited with {proc.returncode}")
        logs = [(self.work / f"node-{i}" / "supernode.log") for i in range(self.nodes)]
        return all("SuperNode ID" in p.read_text(errors="replace") for p in logs if p.exists())

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def run(self, rounds: int, array_size: int, timeout: float = 900.0) -> dict[str, Any]:
        return run_floor_app(
            self.link,
            self.work,
            rounds=rounds,
            nodes=self.nodes,
            array_size=array_size,
            timeout=timeout,
        )


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def run_floor_app(
    link: SuperLink,
    work: Path,
    *,
    rounds: int,
    nodes: int,
    array_size: int,
    timeout: float,
    federation_config: str | None = None,
) -> dict[str, Any]:
    """Submit the floor app, wait (bounded) for it to finish, return its history and status."""
    out = work / "floor-runs"
    config = work / "floor-config.toml"
    config.write_text(
        f"num-server-rounds = {rounds}\nmin-nodes = {nodes}\narray-size = {array_size}\n"
        f"round-timeout = 300.0\nwait-for-nodes = 300.0\nout-dir = {json.dumps(str(out))}\n"
    )
    args = ["run", str(FLOOR_APP), CONNECTION, "-c", str(config)]
    if federation_config:
        args += ["--federation-config", federation_config]
    run_id = str(link.flwr(*args, timeout=120)["run-id"])
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = link.run_status(run_id)
        if str(status.get("status", "")).startswith("finished"):
            break
        time.sleep(2.0)
    else:
        link.stop_run(run_id)
        raise RuntimeError(f"floor run {run_id} passed its {timeout:g} s deadline; stopped it")
    history = json.loads((out / run_id / "history.json").read_text())
    if status.get("status") != "finished:completed":
        raise RuntimeError(
            f"floor run {run_id} {status.get('status')}: {status.get('status-details')}"
        )
    return {"run_id": run_id, "status": status, "history": history}


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
    from models.training import TrainConfig, fit

    spec = prepared.spec
    xv, yv = arrays_for(spec, prepared.validation)
    holdout = Holdout(xv.astype(np.float32), yv, real=True)
    x, y = device_rows(prepared, parts[:1])
    model = GlobalModel(spec)
    fit(model.model, spec, (x, y), TrainConfig(epochs=1))  # adapt statistics, warm up
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
                lambda: fit(model.model, spec, (x, y), TrainConfig(epochs=1)),
            )
            timed("fit, 3 epochs", lambda: fit(model.model, spec, (x, y), TrainConfig(epochs=3)))
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


def bytes_table(results: dict[str, Any]) -> str:
    rows = []
    if "overhead" in results:
        ours = results["overhead"]["orchard"]
        rows.append(_bytes_row(f"Orchard, {results['overhead']['devices']} devices", ours))
        floor = results["overhead"]["floor"]["history"]
        rows.append(
            _bytes_row(
                f"Flower floor, {results['overhead']['devices']} devices",
                floor,
                params=ours.get("model", {}).get("parameters"),
            )
        )
    for run in results.get("accuracy_runs", []):
        rows.append(_bytes_row(f"Orchard, {run['partition']} {run['strategy']}", run["history"]))
    return table(
        "Bytes per round per device (history.json)",
        [
            "run",
            "model float32 bytes",
            "down (coordinator -> device)",
            "up (device -> coordinator)",
            "down / model",
            "up / model",
        ],
        rows,
        "Down = the global arrays twice (train and evaluate messages) plus config; up = the "
        "trained arrays once plus the metric records. Counted by Flower's `count_bytes()` on "
        "the message records (payload, not HTTP framing).",
    )


def _bytes_row(name: str, history: dict[str, Any], params: int | None = None) -> list[Any]:
    rounds = history["rounds"]
    per_down = median([r["bytes_sent"] / max(1, _devices(r)) for r in rounds])
    per_up = median([r["bytes_received"] / max(1, _devices(r)) for r in rounds])
    params = params or int(history.get("model", {}).get("parameters", 0))
    model = params * 4
    ratio = (lambda v: f"{v / model:.2f}") if model else (lambda v: "-")
    return [
        name,
        f"{model:,}",
        f"{per_down:,.0f}",
        f"{per_up:,.0f}",
        ratio(per_down),
        ratio(per_up),
    ]


def _devices(record: dict[str, Any]) -> int:
    if "selected" in record:
        return len(record["selected"])
    return int(record.get("train_replies", 1))


# -- part 4: inference while training ------------------------------------------------------
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


class StateLog:
    """Samples trainers' status files every ``every_s``: (time, device, state, round)."""

    def __init__(self, paths: list[Path], every_s: float = 0.02) -> None:
        self.paths, self.every_s = paths, every_s
        self.points: list[tuple[float, int, str, int | None]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> StateLog:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)

    def _loop(self) -> None:
        from agent.federation import status

        while not self.stop.is_set():
            for i, path in enumerate(self.paths):
                data = status.read(path)
                self.points.append((time.perf_counter(), i, data.state, data.round))
            self.stop.wait(self.every_s)

    def state_at(self, t: float, device: int = 0) -> str:
        import bisect

        mine = [p for p in self.points if p[1] == device]
        i = bisect.bisect_right([p[0] for p in mine], t) - 1
        return mine[i][2] if i >= 0 else "idle"

    def spans(self, states: set[str]) -> dict[int, float]:
        """Per round: first entry into ``states`` on any device to the last exit from them."""
        bounds: dict[int, list[float]] = {}
        for device in range(len(self.paths)):
            mine = [p for p in self.points if p[1] == device]
            for (t, _, state, rnd), (t_next, *_) in itertools.pairwise(mine):
                if state in states and rnd is not None:
                    b = bounds.setdefault(int(rnd), [t, t_next])
                    b[0], b[1] = min(b[0], t), max(b[1], t_next)
        return {rnd: b[1] - b[0] for rnd, b in bounds.items()}


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
            lambda: str(((dev.health() or {}).get("model") or {}).get("version", "")).startswith(
                run_id
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


# -- part 5: Flower Simulation Engine -----------------------------------------------------
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


if __name__ == "__main__":
    sys.exit(main())
