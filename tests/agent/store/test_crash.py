"""kill -9 a writer process at random moments; no committed row may be lost or corrupted."""

from __future__ import annotations

import os
import random
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from agent.store import SqliteStore, StoreSettings

ROOT = Path(__file__).resolve().parents[3]
CHILD = Path(__file__).with_name("crash_writer.py")
KILLS = 15
LINE_TIMEOUT_S = 20.0


class Lines:
    """Reads a child's stdout line by line, every wait bounded by a deadline."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self._fd = proc.stdout.fileno()
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._fd, selectors.EVENT_READ)
        self._buf = b""
        self.eof = False

    def next(self, timeout: float) -> str | None:
        """The next line, or None at EOF; raises TimeoutError past the deadline."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0 or not self._sel.select(left):
                raise TimeoutError(f"no line from the writer within {timeout} s")
            chunk = os.read(self._fd, 65536)
            self.eof = not chunk
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def close(self) -> None:
        self._sel.close()


def run_and_kill(path: Path, rng: random.Random) -> int:
    """Start a writer, SIGKILL it after a random number of commits; return the last reported."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), str(rng.choice([1, 7, 50, 300]))],
        stdout=subprocess.PIPE,
        env=env,
    )
    lines = Lines(proc)
    last = -1
    try:
        assert lines.next(LINE_TIMEOUT_S) == "ready"
        for _ in range(rng.randint(0, 40)):
            line = lines.next(LINE_TIMEOUT_S)
            assert line is not None, "writer exited before it was killed"
            last = int(line)
        proc.send_signal(signal.SIGKILL)  # the writer is mid-batch, mid-commit or mid-checkpoint
        while (line := lines.next(LINE_TIMEOUT_S)) is not None:
            last = int(line)  # reported before the kill landed: committed too
        assert proc.wait(timeout=LINE_TIMEOUT_S) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=LINE_TIMEOUT_S)
        lines.close()
        assert proc.stdout is not None
        proc.stdout.close()
    return last


def test_kill_9_never_loses_a_committed_row(tmp_path: Path) -> None:
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    path = tmp_path / "crash.db"
    reported = -1
    for _ in range(KILLS):
        reported = max(reported, run_and_kill(path, rng))

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", f"seed={seed}"
        stored = [int(ts) for (ts,) in conn.execute("SELECT ts FROM samples ORDER BY id")]
    finally:
        conn.close()
    assert stored == list(range(len(stored))), f"holes or duplicates, seed={seed}"
    assert len(stored) - 1 >= reported, f"lost committed rows, seed={seed}"
    assert reported > 0, f"the writer never committed, seed={seed}"

    with SqliteStore(StoreSettings(path=path)) as store:
        ds = store.dataset(["seq", "twice"], labels=True)
        np.testing.assert_array_equal(ds.x[:, 1], 2 * ds.x[:, 0])
        assert ds.labels is not None
        assert ds.labels.tolist() == [f"L{s % 3}" for s in range(len(stored))]
