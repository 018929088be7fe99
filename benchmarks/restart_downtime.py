"""Benchmark the prediction endpoint across agent restarts (what a software update's switch and a
remote configuration restart cost a client); prints a table.

Real parts: ``orchard-agent run`` processes (synthetic sensor, a float32 mlp, HTTP on
127.0.0.1), stopped with SIGTERM and started again ``--restarts`` times, while one client posts
predictions back to back (15 s timeout each). Two ways the listening socket is handled:

- ``kept``: as under systemd with ``FileDescriptorStoreMax=1``: the socket is created once and
  given to every agent as systemd passes a stored descriptor (fd 3, ``$LISTEN_FDS``), so
  requests sent between two agents wait in its backlog;
- ``rebound``: each agent binds the port itself (no descriptor store): requests sent between two
  agents are refused;
- ``handover``: no restart at all: ``SIGUSR2`` to the agent, which starts its successor on its
  own socket and exits once the successor serves (what a software update's switch does).

Per restart: the old agent's exit after SIGTERM (handover: after SIGUSR2, which includes the
new agent's start), the new agent's start to its first answer,
the longest time between two answers the client saw, and the requests that failed::

    .venv/bin/python benchmarks/restart_downtime.py [--restarts 20]
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))


from benchmarks import machine  # noqa: E402
from tests.agent.serve.bundles import export  # noqa: E402
from tests.agent.serve.load import PredictionLoad  # noqa: E402

BIN = Path(sys.executable).parent
AS_SYSTEMD = (  # fd 3 and $LISTEN_* as systemd sets them, then exec the agent
    "import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); fd != 3 and os.close(fd); "
    "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='http'); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


class Notify:
    """A ``$NOTIFY_SOCKET``: the MAINPID= an agent sends when it hands over."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def mainpid(self, timeout: float = 120.0) -> int:
        self.sock.settimeout(timeout)
        while True:
            data, _, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(64))
            for line in data.decode().splitlines():
                if line.startswith("MAINPID="):
                    return int(line.split("=", 1)[1])


def _agent(
    config: Path, sock: socket.socket | None, log: Path, notify: Path | None
) -> subprocess.Popen[bytes]:
    argv = [str(BIN / "orchard-agent"), "run", "-c", str(config)]
    out = open(log, "ab")  # noqa: SIM115 - the child's
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    if notify is not None:
        env["NOTIFY_SOCKET"] = str(notify)
    if sock is None:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    fd = sock.fileno()
    return subprocess.Popen(
        [sys.executable, "-c", AS_SYSTEMD, str(fd), *argv],
        pass_fds=(fd,),
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
    )


def _gone(pid: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.005)  # another process's exit, bounded by the deadline
    raise TimeoutError(f"agent {pid} did not exit")


def _handovers(
    first: subprocess.Popen[bytes], client: PredictionLoad, notify: Notify, count: int
) -> list[dict[str, float]]:
    """SIGUSR2 to the agent that serves; it hands over to a new one (agent/handover.py)."""
    rows, pid = [], first.pid
    try:
        for _ in range(count):
            failed_before = len(client.failures)
            t0 = time.monotonic()
            os.kill(pid, signal.SIGUSR2)
            new = notify.mainpid()
            if pid == first.pid:
                first.wait(60)
            else:
                _gone(pid)
            exited = time.monotonic()
            time.sleep(1.0)
            window = [t for t in client.answers if t0 - 1.0 <= t <= exited + 1.0]
            gaps = [b - a for a, b in itertools.pairwise(window)]
            rows.append(
                {
                    "exit_s": exited - t0,
                    "start_to_answer_s": 0.0,  # the old agent served until the new one did
                    "unanswered_s": max(gaps, default=0.0),
                    "failed": float(len(client.failures) - failed_before),
                }
            )
            pid = new
    finally:
        if pid != first.pid:
            os.kill(pid, signal.SIGTERM)
            _gone(pid)
    return rows


def _wait_answer(client: PredictionLoad, after: float, timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.answers and client.answers[-1] > after:
            return next(t for t in client.answers if t > after)
        time.sleep(0.002)  # polling the client's own list, bounded by the deadline
    raise TimeoutError("no answer from the agent")


def run(mode: str, restarts: int, work: Path) -> list[dict[str, float]]:
    port_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    port_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    port_sock.bind(("127.0.0.1", 0))
    port = port_sock.getsockname()[1]
    if mode == "kept":
        port_sock.listen(128)
        sock: socket.socket | None = port_sock
    else:
        port_sock.close()
        sock = None
    state = work / mode / "state"
    inbox = state / "models" / "inbox"
    inbox.mkdir(parents=True)
    shutil.copytree(
        export(inbox.parent / "bundles", "mlp", "classify", "float32", "1"), inbox / ".m"
    )
    (inbox / ".m").rename(inbox / "m")
    config = work / mode / "agent.toml"
    config.write_text(
        f'device_id = "bench"\nstate_dir = "{state}"\n'
        '[sensors.room]\ndriver = "synthetic"\ninterval_s = 1\n'
        f'[http]\nhost = "127.0.0.1"\nport = {port}\n'
    )
    log = work / mode / "agent.log"
    notify = Notify(work / mode / "notify.sock")  # read only by the handover mode
    proc = _agent(config, sock, log, notify.path if mode == "handover" else None)
    client = PredictionLoad(f"http://127.0.0.1:{port}/api/predict")
    rows = []
    try:
        _wait_answer(client, 0.0)
        time.sleep(1.0)  # steady state (the model was taken from the inbox)
        if mode == "handover":
            return _handovers(proc, client, notify, restarts)
        for _ in range(restarts):
            failed_before = len(client.failures)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            exited = time.monotonic()
            proc = _agent(config, sock, log, None)
            first = _wait_answer(client, exited)
            time.sleep(0.5)
            window = [t for t in client.answers if t0 - 1.0 <= t <= first + 0.5]
            gaps = [b - a for a, b in itertools.pairwise(window)]
            rows.append(
                {
                    "exit_s": exited - t0,
                    "start_to_answer_s": first - exited,
                    "unanswered_s": max(gaps, default=0.0),
                    "failed": float(len(client.failures) - failed_before),
                }
            )
    finally:
        client.stop.set()
        client.thread.join(20)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        if sock is not None:
            sock.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--restarts", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(machine.describe("numpy", "ai-edge-litert", "uvicorn", "starlette"))
    print(f"{args.restarts} restarts per mode; medians (max)\n")
    columns = ("socket", "old agent exits", "new agent's first answer", "longest unanswered",
               "failed requests")  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("handover", "kept", "rebound"):
            rows = run(mode, args.restarts, Path(tmp))

            def cell(key: str, unit: str = " s", rows: list[dict[str, float]] = rows) -> str:
                values = [r[key] for r in rows]
                fmt = "{:.0f}" if unit == "" else "{:.2f}"
                med, top = fmt.format(statistics.median(values)), fmt.format(max(values))
                return f"{med}{unit} ({top})"

            print(
                f"| {mode} | {cell('exit_s')} | {cell('start_to_answer_s')} | "
                f"{cell('unanswered_s')} | {cell('failed', '')} |"
            )


if __name__ == "__main__":
    main()
