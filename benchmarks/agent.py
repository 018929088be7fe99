"""Benchmark the agent as a process, the way a board runs it; prints a Markdown table.

- cold start: process spawn to the first answered ``POST /api/predict`` (model already
  installed), median of several starts;
- ``POST /api/predict`` latency over loopback with one sequential client and with four
  concurrent clients (keep-alive ``http.client``), and predictions per second;
- RSS of the agent over a soak with 10 Hz sampling plus a steady prediction load: start,
  end, max, and the growth slope over the second half.

    .venv/bin/python benchmarks/agent.py [--soak-minutes 10] [--requests 3000]
        [--python /tmp/boardvenv/bin/python]

``--python`` runs the agent from another environment (its ``orchard-agent`` script beside that
interpreter, e.g. a board-like ``pip install '.[agent]'`` venv without TensorFlow); this
process still exports the model with TensorFlow from the dev venv.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import psutil  # noqa: E402

BIN = Path(sys.executable).parent
BODY = json.dumps({"features": [21.0, 45.0, 1013.0, 120.0, 450.0]}).encode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _export(out: Path) -> None:
    from models import families, synthetic
    from models.export import export_tflite
    from models.training import TrainSettings, fit

    ds = synthetic.make("mlp", "classify", n=600)
    model = families.build(ds.spec)
    fit(model, ds.spec, (ds.x, ds.y), TrainSettings(epochs=5))
    export_tflite(
        model,
        ds.spec,
        out,
        representative=ds.x,
        held=(ds.x[:100], ds.y[:100]),
        name="rooms",
        version="1",
    )


class Agent:
    def __init__(self, root: Path, bin_dir: Path = BIN) -> None:
        self.root = root
        self.command = bin_dir / "orchard-agent"
        # Another environment runs its own installed packages, whatever this process runs.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.env = None if bin_dir == BIN else env
        self.port = _free_port()
        self.config = root / "agent.toml"
        self.config.write_text(
            f'device_id = "bench"\nstate_dir = "{root / "state"}"\n'
            '[sensors.env]\ndriver = "synthetic"\ninterval_s = 0.1\n'
            f"[http]\nport = {self.port}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start and return seconds until the first answered prediction."""
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(self.command), "run", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.env,
        )
        deadline = t0 + 60
        while time.perf_counter() < deadline:
            try:
                if self.predict(http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)):
                    return time.perf_counter() - t0
            except OSError:
                pass
            time.sleep(0.005)  # polling a starting process, bounded by the deadline
        raise RuntimeError("the agent did not answer within 60 s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)
            self.proc = None

    @staticmethod
    def predict(conn: http.client.HTTPConnection) -> bool:
        conn.request("POST", "/api/predict", BODY, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return resp.status == 200


def _latencies(port: int, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        assert Agent.predict(conn)
        out.append((time.perf_counter() - t) * 1000)
    conn.close()
    return out


def _rss_split(pid: int) -> str:
    """Anonymous (heap, Python objects) versus file-backed (code of loaded libraries) RSS."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    anon, file = (int(fields[k].split()[0]) / 1024 for k in ("RssAnon", "RssFile"))
    return f"{anon:.1f} / {file:.1f} MB"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--soak-minutes", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument(
        "--python",
        type=Path,
        default=Path(sys.executable),
        help="the interpreter of the environment whose orchard-agent runs (default: this one)",
    )
    args = parser.parse_args()
    bin_dir = args.python.absolute().parent
    if not (bin_dir / "orchard-agent").is_file():
        parser.error(f"--python: expected an environment with orchard-agent in {bin_dir}")

    from models.runtime import backend

    rt = backend()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; python "
        f"{platform.python_version()}; runtime {rt.name} {rt.version}; "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    print(f"agent: {bin_dir / 'orchard-agent'}")
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        agent = Agent(root, bin_dir)
        _export(root / "export")
        inbox = root / "state" / "models" / "inbox"
        inbox.mkdir(parents=True)
        shutil.copytree(root / "export", inbox / "rooms-1")
        agent.start()  # installs the model from the inbox
        agent.stop()

        starts = []
        for _ in range(args.starts):
            starts.append(agent.start())
            agent.stop()
        rows.append(
            (
                f"cold start to first prediction (median of {args.starts})",
                f"{statistics.median(starts):.2f} s",
            )
        )

        agent.start()
        assert agent.proc is not None
        _latencies(agent.port, 200)  # warm-up
        seq = _latencies(agent.port, args.requests)
        rows.append(
            (
                "POST /api/predict, 1 client: p50 / p99",
                f"{_pct(seq, 0.5):.3f} / {_pct(seq, 0.99):.3f} ms",
            )
        )
        results: list[list[float]] = [[] for _ in range(4)]
        t0 = time.perf_counter()
        threads = [
            threading.Thread(
                target=lambda i=i: results[i].extend(_latencies(agent.port, args.requests // 4))
            )
            for i in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        conc = [v for r in results for v in r]
        rows.append(
            (
                "POST /api/predict, 4 clients: p50 / p99",
                f"{_pct(conc, 0.5):.3f} / {_pct(conc, 0.99):.3f} ms",
            )
        )
        rows.append(("predictions per second (4 clients)", f"{len(conc) / elapsed:,.0f}"))

        proc = psutil.Process(agent.proc.pid)
        rss: list[tuple[float, float]] = []
        stop = threading.Event()

        def load() -> None:  # ~20 predictions per second beside 10 Hz sampling
            conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=5)
            while not stop.wait(0.05):
                Agent.predict(conn)

        loader = threading.Thread(target=load)
        loader.start()
        t_end = time.monotonic() + args.soak_minutes * 60
        while time.monotonic() < t_end:
            rss.append((time.monotonic(), proc.memory_info().rss / 2**20))
            stop.wait(min(10.0, max(0.0, t_end - time.monotonic())))
        rss.append((time.monotonic(), proc.memory_info().rss / 2**20))
        split = _rss_split(agent.proc.pid)
        stop.set()
        loader.join()
        agent.stop()
        half = rss[len(rss) // 2 :]
        slope = (half[-1][1] - half[0][1]) / max(1e-9, (half[-1][0] - half[0][0]) / 3600)
        peak = max(v for _, v in rss)
        rows.append(
            (
                f"RSS over a {args.soak_minutes:g} min soak: start / end / max",
                f"{rss[0][1]:.1f} / {rss[-1][1]:.1f} / {peak:.1f} MB",
            )
        )
        rows.append(("RSS growth, second half of the soak", f"{slope:+.1f} MB/h"))
        rows.append(("RSS at the end: anonymous / file-backed", split))

    print("\n| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
