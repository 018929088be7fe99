"""The warm trainer's memory over many rounds, as a board runs it; prints Markdown tables.

A real trainer process (``python -m agent.trainer``, started on demand by the agent's
``TrainerSupervisor`` through its socket) answers ``--rounds`` federated rounds of the demo's
model on a store seeded like a demo device: per round one ``fit`` and one ``evaluate`` that
exports an int8 TFLite bundle, as the thin ClientApp asks. After each round it prints the
trainer's memory from ``/proc/<pid>/status``: VmRSS, its anonymous part (RssAnon: what cannot be
dropped without swap), its file-backed part (RssFile: mostly TensorFlow's 800 MB shared library,
clean pages the kernel can drop and re-read), VmHWM (the peak RSS), and the fit/evaluate times.

    .venv/bin/python benchmarks/trainer.py [--rounds 20] [--limit-mb 450] [--imports]

``--limit-mb N`` runs the trainer inside a memory cgroup of N MB (v2 ``memory.max`` or v1
``memory.limit_in_bytes``; needs root), after evicting TensorFlow's libraries from the page
cache, so their pages are charged to the trainer as on a board where nothing else maps them;
it reports the cgroup's peak charge and whether the kernel had to OOM-kill.
``--imports`` measures what ``import tensorflow`` costs with and without the optional packages
the trainer refuses (agent/trainer/lean.py), each in a fresh process.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from benchmarks.machine import describe  # noqa: E402

MB = 2**20


def status_mb(pid: int) -> dict[str, float]:
    """VmRSS, RssAnon, RssFile and VmHWM of ``pid`` in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


# -- the memory cgroup ---------------------------------------------------------------------
class Cgroup:
    """A child memory cgroup of this process's own (v2 or v1), removed on close."""

    def __init__(self, limit_mb: int) -> None:
        v2 = Path("/sys/fs/cgroup/cgroup.controllers")
        if v2.exists() and "memory" in v2.read_text().split():
            rel = Path("/proc/self/cgroup").read_text().splitlines()[0].split(":", 2)[2]
            base, self.v2 = Path("/sys/fs/cgroup") / rel.lstrip("/"), True
        else:
            rel = next(
                line.split(":", 2)[2]
                for line in Path("/proc/self/cgroup").read_text().splitlines()
                if line.split(":", 2)[1] == "memory"
            )
            base, self.v2 = Path("/sys/fs/cgroup/memory") / rel.lstrip("/"), False
        self.path = base / f"orchard-trainer-bench-{os.getpid()}"
        self.path.mkdir()
        limit = str(limit_mb * MB)
        (self.path / ("memory.max" if self.v2 else "memory.limit_in_bytes")).write_text(limit)

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def peak_mb(self) -> float:
        name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        with contextlib.suppress(OSError):
            return int((self.path / name).read_text()) / MB
        return float("nan")

    def oom_kills(self) -> int:
        name = "memory.events" if self.v2 else "memory.oom_control"
        for line in (self.path / name).read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def close(self) -> None:
        for _ in range(50):
            with contextlib.suppress(OSError):
                self.path.rmdir()
                return
            time.sleep(0.1)


def evict_tensorflow_pages() -> int:
    """Drop the page cache of TensorFlow's shared libraries (pages nobody maps); bytes seen."""
    import importlib.util

    spec = importlib.util.find_spec("tensorflow")
    assert spec is not None and spec.origin is not None
    total = 0
    for lib in Path(spec.origin).parent.rglob("*.so*"):
        with contextlib.suppress(OSError):
            fd = os.open(lib, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                total += os.fstat(fd).st_size
            finally:
                os.close(fd)
    return total


# -- the device ----------------------------------------------------------------------------
@contextlib.contextmanager
def device(work: Path, cgroup: Cgroup | None) -> Iterator[tuple[Any, Path, Any]]:
    """A demo device's directory and store, and its trainer supervisor (started)."""
    from agent import config as agent_config
    from agent.federation.trainer_supervisor import TrainerSupervisor
    from coordinator.demo import datasets
    from coordinator.demo.fleet import Device
    from coordinator.demo.partition import Partitioning, split

    prepared = datasets.prepare("synthetic", "classify", 3, seed=1)
    part = split(prepared.train, 3, Partitioning.parse("iid"), seed=1)[0]
    dev = Device(0, "bench-1", work / "d1")
    dev.configure(superlink="127.0.0.1:1", sensor=prepared.live_sensor(dev, part), extra={})
    dev.seed(part)
    cfg = agent_config.load(dev.config_path)
    command = [sys.executable, "-m", "agent.trainer", "--config"]
    if cgroup is not None:  # join the cgroup before the interpreter starts (exec keeps it)
        command = ["sh", "-c", f'echo $$ > {cgroup.procs} && exec "$@"', "sh", *command]
    sup = TrainerSupervisor(
        cfg.federation,
        cfg.training,
        config_path=dev.config_path,
        state_dir=cfg.state_dir,
        command=command,
    )
    sup.start()
    try:
        yield prepared.spec, cfg.federation.trainer_socket, sup
    finally:
        sup.stop()


def trainer_pid(sup: Any) -> int:
    """The running trainer's pid, from its status file (``sh`` execs python: the same pid)."""
    pid = sup.current_status().pid
    assert isinstance(pid, int) and psutil.pid_exists(pid), "the trainer is not running"
    return pid


INIT_PROBE = """
import sys, json, numpy as np
from models import families
from models.spec import ModelSpec
model = families.build(ModelSpec.from_dict(json.loads(sys.argv[1])))
np.savez(sys.argv[2], *[np.asarray(w, np.float32) for w in model.get_weights()])
"""


def initial_weights(spec: Any, path: Path) -> list[np.ndarray]:
    """The model's initial weights, built in a child: this process never maps TensorFlow, so
    its pages are charged to the trainer's cgroup (``--limit-mb``), as on a board."""
    command = [sys.executable, "-c", INIT_PROBE, json.dumps(spec.to_dict()), str(path)]
    subprocess.run(command, check=True, capture_output=True, cwd=_HERE.parent, timeout=300)
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def rounds(args: argparse.Namespace, cgroup: Cgroup | None) -> list[dict[str, float]]:
    from agent.federation import trainer_api
    from agent.federation.trainer_api import TrainerRequest, TrainParams

    rows: list[dict[str, float]] = []
    with (
        tempfile.TemporaryDirectory(prefix="orchard-trainer-bench-") as tmp,
        device(Path(tmp), cgroup) as (spec, sock, sup),
    ):
        weights = initial_weights(spec, Path(tmp) / "initial.npz")
        if cgroup is not None:  # after this process's child read TensorFlow: evict it again
            assert "tensorflow" not in sys.modules, "this process must not map TensorFlow"
            evict_tensorflow_pages()
        train = TrainParams(epochs=args.epochs, batch_size=32, learning_rate=0.01)
        for rnd in range(1, args.rounds + 1):
            fit = TrainerRequest("fit", "bench", rnd, spec.to_dict(), train)
            t0 = time.perf_counter()
            reply, weights = trainer_api.call(str(sock), fit, weights, timeout=600)
            t1 = time.perf_counter()
            assert reply.ok, reply
            evaluate = dataclasses.replace(
                fit, op="evaluate", model_name="bench", personalize=args.personalize
            )
            reply, _ = trainer_api.call(str(sock), evaluate, weights, timeout=600)
            t2 = time.perf_counter()
            assert reply.ok, reply
            row = {"round": rnd, **status_mb(trainer_pid(sup)), "fit_s": t1 - t0, "eval_s": t2 - t1}
            rows.append(row)
            print(
                f"round {rnd}: RSS {row['VmRSS']:.1f} MB (anon {row['RssAnon']:.1f}, file "
                f"{row['RssFile']:.1f}), peak {row['VmHWM']:.1f}, fit {row['fit_s']:.2f} s, "
                f"evaluate+export {row['eval_s']:.2f} s",
                file=sys.stderr,
                flush=True,
            )
    return rows


def slope(values: list[float]) -> float:
    """Least-squares MB per round."""
    if len(values) < 2:
        return float("nan")
    x = np.arange(len(values), dtype=float)
    return float(np.polyfit(x, np.asarray(values), 1)[0])


# -- imports -------------------------------------------------------------------------------
IMPORT_PROBE = """
import os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
if sys.argv[1] == "lean":
    from agent.trainer import lean
    lean.skip_optional()
t = time.perf_counter()
import agent.trainer.jobs  # TensorFlow, Keras and the training/export code
took = time.perf_counter() - t
st = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
mb = lambda k: int(st[k].split()[0]) / 1024
print(mb("VmRSS"), mb("RssAnon"), mb("RssFile"), took, len(sys.modules))
"""


def imports(repeats: int) -> list[tuple[str, list[float]]]:
    out = []
    for mode in ("full", "lean"):
        runs = []
        for _ in range(repeats):
            command = [sys.executable, "-c", IMPORT_PROBE, mode]
            res = subprocess.run(
                command, capture_output=True, text=True, check=True, cwd=_HERE.parent
            )
            runs.append([float(v) for v in res.stdout.split()])
        out.append((mode, [statistics.median(col) for col in zip(*runs, strict=True)]))
    return out


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def report(
    args: argparse.Namespace, rows: list[dict[str, float]], cgroup: dict[str, float]
) -> None:
    print(
        f"{args.rounds} rounds of fit + evaluate/int8 export, demo model (mlp, 5 features), "
        f"{args.epochs} local epoch(s), personalize={args.personalize}\n"
    )
    header = ["round", "RSS MB", "anonymous MB", "file-backed MB", "peak RSS MB", "fit s"]
    mb = ("VmRSS", "RssAnon", "RssFile", "VmHWM")
    per_round = [
        [
            f"{r['round']:.0f}",
            *(f"{r[k]:.1f}" for k in mb),
            f"{r['fit_s']:.2f}",
            f"{r['eval_s']:.2f}",
        ]
        for r in rows
    ]
    print(table([*header, "evaluate+export s"], per_round))
    later = rows[2:] if len(rows) > 3 else rows
    fit_s = statistics.median(r["fit_s"] for r in later)
    eval_s = statistics.median(r["eval_s"] for r in later)
    figures = [
        [
            "RSS growth after round 2 (least squares)",
            f"{slope([r['VmRSS'] for r in later]):+.2f} MB/round",
        ],
        ["anonymous growth after round 2", f"{slope([r['RssAnon'] for r in later]):+.2f} MB/round"],
        ["peak RSS (VmHWM)", f"{max(r['VmHWM'] for r in rows):.1f} MB"],
        ["peak anonymous (per-round samples)", f"{max(r['RssAnon'] for r in rows):.1f} MB"],
        ["median fit / evaluate+export, rounds 3+", f"{fit_s:.2f} / {eval_s:.2f} s"],
    ]
    if cgroup:
        figures += [
            [f"cgroup peak charge (limit {args.limit_mb} MB)", f"{cgroup['peak']:.1f} MB"],
            ["OOM kills in the cgroup", f"{cgroup['kills']:.0f}"],
        ]
    print()
    print(table(["figure", "value"], figures))


def report_imports(repeats: int) -> None:
    print(
        f"\n`import agent.trainer.jobs` (TensorFlow + Keras), fresh process, median of {repeats}:\n"
    )
    header = ["imports", "RSS MB", "anonymous MB", "file-backed MB", "time s", "modules"]
    rows = []
    for mode, (rss, anon, file, took, mods) in imports(repeats):
        label = "everything" if mode == "full" else "lean (no matplotlib, scipy)"
        rows.append(
            [label, f"{rss:.1f}", f"{anon:.1f}", f"{file:.1f}", f"{took:.2f}", f"{mods:.0f}"]
        )
    print(table(header, rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--personalize", action="store_true")
    parser.add_argument("--limit-mb", type=int, default=0, help="run in a memory cgroup")
    parser.add_argument("--imports", action="store_true", help="also measure import costs")
    parser.add_argument("--import-repeats", type=int, default=3)
    args = parser.parse_args()

    print(describe(("tensorflow", "tensorflow-cpu"), "keras", "numpy", "ai-edge-litert"))
    print()
    cgroup, charged = None, {}
    if args.limit_mb:
        evicted = evict_tensorflow_pages()
        cgroup = Cgroup(args.limit_mb)
        print(
            f"trainer in a memory cgroup of {args.limit_mb} MB ({cgroup.path}); the page cache "
            f"of {evicted / MB:.0f} MB of TensorFlow libraries evicted first\n"
        )
    try:
        rows = rounds(args, cgroup)
    finally:
        if cgroup:
            charged = {"peak": cgroup.peak_mb(), "kills": float(cgroup.oom_kills())}
            cgroup.close()
    report(args, rows, charged)
    if args.imports:
        report_imports(args.import_repeats)


if __name__ == "__main__":
    main()
