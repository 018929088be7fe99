"""What the prediction log costs: per served prediction, per flush, per health tick.

- ``POST /api/predict`` handled in-process (``Predictions.from_body``, the code the fast lane
  runs, with the room classifier) with and without the log, best of several rounds: the
  extra time on the request's path (ids, the id in the JSON, one deque append); then the
  same at saturation while the writer thread runs (it competes for the GIL);
- ``POST /api/predict`` over loopback (uvicorn in this process, a sequential keep-alive client
  in another), p50 and p99, with and without the log;
- the writer thread's cost per logged prediction (a file database, WAL, ``NORMAL``), which is
  off the request's path;
- ``LabelService.live_models`` (health's ``models`` section) over a full log of 50,000
  predictions of two versions, uncached.

    .venv/bin/python benchmarks/prediction_log.py [--requests 20000]

Prints a Markdown table. Not a timed test: figures depend on the machine. Two runs on the dev
machine (2 x86 cores, shared with other jobs, Python 3.11):

| what | figure |
|---|---|
| in-process handler, no log / with the log | 28.6 / 35.4 us (+6 to +7 us) |
| same, saturated, writer thread running | +26 us (it competes for the GIL) |
| loopback p50 / p99, no log | 0.29-0.31 / 0.44-0.46 ms |
| loopback p50 / p99, with the log | 0.30-0.33 / 0.48-0.54 ms |
| writer thread, per logged prediction | 0.9 us |
| health ``models`` over 50,000 logged predictions | 1.5-1.7 ms |
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BODY = json.dumps({"features": [21.0, 45.0, 1013.0, 120.0, 450.0]}).encode()


def _bundle(root: Path) -> Path:
    from models import families, synthetic
    from models.export import export_tflite
    from models.training import TrainSettings, fit

    ds = synthetic.make("mlp", "classify", n=300, seed=1)
    model = families.build(ds.spec)
    fit(model, ds.spec, (ds.x, ds.y), TrainSettings(epochs=2))
    out = root / "bundle"
    export_tflite(
        model,
        ds.spec,
        out,
        representative=ds.x,
        held=(ds.x, ds.y),
        name="mlp-classify",
        version="1",
    )
    return out


def _per_request_us(predictions: object, n: int, log: object = None) -> float:
    """Seconds per request in chunks of 500; with ``log``, its pending predictions are
    written between chunks, untimed (the writer thread does that every 0.5 s)."""
    handle = predictions.from_body  # type: ignore[attr-defined]
    spent = 0.0
    for _ in range(max(1, n // 500)):
        t0 = time.perf_counter()
        for _ in range(500):
            handle(BODY)
        spent += time.perf_counter() - t0
        if log is not None:
            log.flush()  # type: ignore[attr-defined]
    return spent / (max(1, n // 500) * 500) * 1e6


CLIENT = """
import http.client, json, statistics, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
body = json.dumps({"features": [21.0, 45.0, 1013.0, 120.0, 450.0]}).encode()
conn = http.client.HTTPConnection("127.0.0.1", port)
times = []
for i in range(n + 200):
    t0 = time.perf_counter()
    conn.request("POST", "/api/predict", body, {"Content-Type": "application/json"})
    r = conn.getresponse(); r.read()
    assert r.status == 200
    if i >= 200:
        times.append((time.perf_counter() - t0) * 1e3)
times.sort()
print(json.dumps([statistics.median(times), times[int(0.99 * len(times))]]))
"""


def _loopback(port: int, n: int) -> tuple[float, float]:
    """p50 and p99 (ms) of ``n`` sequential keep-alive requests from another process."""
    out = subprocess.run(
        [sys.executable, "-c", CLIENT, str(port), str(n)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    p50, p99 = json.loads(out.stdout)
    return float(p50), float(p99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    from agent.labels import LabelService, LabelSettings, PredictionLog
    from agent.metrics import AgentMetrics
    from agent.serve import HttpServer, HttpSettings, create_app
    from agent.serve.predict import Predictions
    from agent.slots import ModelSlots

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        slots = ModelSlots(root / "models")
        slots.load()
        slots.install(_bundle(root))
        log = PredictionLog(root / "predictions.db", max_predictions=10_000_000)
        plain = Predictions(slots, None, AgentMetrics(process=False))
        logged = Predictions(slots, None, AgentMetrics(process=False), log)
        n = args.requests
        _per_request_us(plain, 2000)
        _per_request_us(logged, 2000, log)
        without, with_log, threaded = [], [], []
        for _ in range(args.rounds):
            without.append(_per_request_us(plain, n))
            with_log.append(_per_request_us(logged, n, log))
        log.start()  # now with the writer thread competing for the GIL, as in the agent
        for _ in range(args.rounds):
            threaded.append(_per_request_us(logged, n))
        a, b, c = min(without), min(with_log), min(threaded)
        log.close()

        # over loopback, as clients see it: the app with and without labels (writer running)
        service = LabelService(LabelSettings(path=root / "served.db"), None, model=lambda: None)
        service.log.start()
        servers = {}
        for name, labels in (("plain", None), ("logged", service)):
            http = HttpSettings(port=0)
            app = create_app(
                slots=slots,
                store=None,
                metrics=AgentMetrics(process=False),
                settings=http,
                labels=labels,
            )
            servers[name] = HttpServer(app, http)
            servers[name].start(timeout=10)
        loop: dict[str, list[tuple[float, float]]] = {"plain": [], "logged": []}
        for _ in range(3):
            for name, server in servers.items():
                loop[name].append(_loopback(server.port, args.requests // 4))
        for server in servers.values():
            server.stop()
        service.close()
        lp = [min(x[i] for x in loop["plain"]) for i in (0, 1)]
        ll = [min(x[i] for x in loop["logged"]) for i in (0, 1)]

        # the writer's work, measured alone: n pending predictions in one flush
        alone = PredictionLog(root / "alone.db", max_predictions=10_000_000)
        flush_us = []
        for _ in range(args.rounds):
            for _ in range(n):
                logged_result = [{"label": "empty", "scores": {"empty": 0.9, "occupied": 0.1}}]
                alone.record(alone.ids(1), "1", logged_result, 0.0001)
            t0 = time.perf_counter()
            alone.flush()
            flush_us.append((time.perf_counter() - t0) / n * 1e6)
        alone.close()

        # health: a full log of two versions, 10 % labelled
        big = PredictionLog(root / "big.db", max_predictions=60_000)
        result = {"label": "empty", "scores": {"empty": 0.8, "occupied": 0.1, "other": 0.1}}
        for version, count in (("1", 20_000), ("2", 30_000)):
            for _ in range(count // 100):
                big.record(big.ids(100), version, [result] * 100, 0.02)
        big.flush()
        big._conn.execute("UPDATE predictions SET label = 'empty', correct = 1 WHERE seq % 10 = 0")
        service = LabelService(LabelSettings(), None, model=lambda: None, log=big, cache_s=0.0)
        manifest = slots.current().manifest  # type: ignore[union-attr]
        object.__setattr__(manifest, "version", "2")
        service.live_models(manifest)
        ticks = []
        for _ in range(5):
            big.generation += 1  # defeat the cache: a changed log
            t0 = time.perf_counter()
            models = service.live_models(manifest)
            ticks.append((time.perf_counter() - t0) * 1000.0)
        assert [m.version for m in models] == ["2", "1"] and models[0].predictions == 30_000
        big.close()

    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}\n")
    print("| what | figure |")
    print("|---|---|")
    print(f"| `POST /api/predict` in-process, no log | {a:.1f} us |")
    print(f"| same, with the prediction log | {b:.1f} us |")
    print(f"| added on the request's path, per prediction | {b - a:+.1f} us |")
    print(f"| same, saturated, with the writer thread running | {c - a:+.1f} us |")
    print(f"| loopback p50 / p99, no log | {lp[0]:.3f} / {lp[1]:.3f} ms |")
    print(f"| loopback p50 / p99, with the log (writer running) | {ll[0]:.3f} / {ll[1]:.3f} ms |")
    writer = statistics.median(flush_us)
    print(f"| writer thread, per logged prediction (off the path) | {writer:.1f} us |")
    print(f"| health `models` over 50,000 logged predictions | {statistics.median(ticks):.1f} ms |")


if __name__ == "__main__":
    main()
