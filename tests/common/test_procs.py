"""orchard_common/procs.py: stopping children, backoff, unix listeners (real processes, sockets)."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

import pytest

from orchard_common import procs

IGNORES_TERM = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def test_stop_terminates_a_child_that_obeys() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    procs.stop(proc, timeout=10)
    assert proc.returncode == -signal.SIGTERM


def test_stop_kills_a_child_that_ignores_sigterm() -> None:
    proc = subprocess.Popen([sys.executable, "-c", IGNORES_TERM], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    started = time.monotonic()
    procs.stop(proc, timeout=0.5)
    assert proc.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10


class _Unkillable:
    """A process handle whose process outlives SIGKILL (uninterruptible I/O, as on a loaded
    board): only the handle is fake, no real process can be made to do this on demand."""

    pid = 4242
    args = ("trainer",)

    def __init__(self) -> None:
        self.signals: list[str] = []

    def poll(self) -> int | None:
        return None

    def terminate(self) -> None:
        self.signals.append("TERM")

    def kill(self) -> None:
        self.signals.append("KILL")

    def wait(self, timeout: float | None = None) -> int:
        raise subprocess.TimeoutExpired(self.args, timeout or 0)


def test_stop_logs_and_returns_when_a_killed_child_is_slow_to_go(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handle = _Unkillable()
    procs.stop(cast("subprocess.Popen[bytes]", handle), timeout=0.01)
    assert handle.signals == ["TERM", "KILL"]
    assert "pid 4242 still there 0 s after SIGKILL" in caplog.text


def test_stop_leaves_nothing_to_do_for_a_finished_or_missing_child() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    procs.stop(proc, timeout=1)
    procs.stop(None, timeout=1)
    assert proc.returncode == 0


def test_backoff_doubles_up_to_its_cap_and_resets() -> None:
    backoff = procs.Backoff(1.0, 5.0)
    assert [backoff.next() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.next() == 1.0


@pytest.mark.parametrize(("low", "high", "factor"), [(0, 1, 2), (2, 1, 2), (1, 2, 0.5)])
def test_backoff_refuses_nonsense(low: float, high: float, factor: float) -> None:
    with pytest.raises(ValueError, match=rf"Received: min_s={low}, max_s={high}"):
        procs.Backoff(low, high, factor)


def test_bind_unix_replaces_a_stale_socket_file_and_sets_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "run" / "trainer.sock"
    path.parent.mkdir()
    path.write_text("left over from a crash")
    sock = procs.bind_unix(path, 0o600)
    try:
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(path))
        conn, _ = sock.accept()
        conn.close()
        client.close()
    finally:
        sock.close()
