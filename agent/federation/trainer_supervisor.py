"""Start the trainer on demand and hold it to its budget (runs inside the agent).

``spawn`` launcher (no systemd): the agent owns the listening socket, as systemd would, and
starts ``python -m agent.trainer`` with that socket when a connection waits and no trainer
runs; the trainer exits by itself after its idle timeout. ``systemd`` launcher: the socket unit
starts it and ``MemoryMax=``/``CPUQuota=`` bound it; the watchdog here still enforces the
time budget. In both modes a psutil watchdog kills the trainer when its anonymous memory (RSS
less file-backed pages, which the kernel can drop and re-read) passes ``training.memory_mb`` or
a request runs past ``training.max_seconds``, and records why in the status file, which the
ClientApp reads to explain the failed round to the coordinator. ``MemoryMax=memory_mb`` on the
systemd unit holds the same anonymous memory plus whatever page cache fits beside it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from agent import cpus as agent_cpus
from agent.federation import status
from agent.federation.budget import TrainingSettings
from agent.federation.settings import FederationSettings
from agent.federation.status import Trainer
from orchard_common import procs

logger = logging.getLogger(__name__)

POLL_S = 0.25
GRACE_S = 5.0


class TrainerSupervisor:
    def __init__(
        self,
        settings: FederationSettings,
        budget: TrainingSettings,
        *,
        config_path: Path,
        state_dir: Path,
        on_event: Callable[[str, dict[str, Any]], None] = lambda kind, data: None,
        command: list[str] | None = None,
        cpus: list[int] | None = None,
    ) -> None:
        self.settings = settings
        self.cpus = cpus  # where a spawned trainer starts (agent/cpus.py)
        self.budget = budget
        self.config_path = config_path
        self.status_path = status.path_for(state_dir)
        self.on_event = on_event
        self.command = command or [sys.executable, "-m", "agent.trainer", "--config"]
        self.log_path = state_dir / "trainer" / "trainer.log"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self.settings.trainer_launcher == "spawn":
            self._listener = self._bind(self.settings.trainer_socket)
        self._thread = threading.Thread(target=self._loop, name="trainer-supervisor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
        procs.stop(self._child, timeout)
        if self._listener:
            self._listener.close()
            self.settings.trainer_socket.unlink(missing_ok=True)

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.poll() is None

    def update_budget(self, budget: TrainingSettings) -> None:
        """A new ``[training]`` budget (a remote configuration change): the watchdog holds a
        running trainer to it from its next check; a spawned trainer reads its own settings
        (nice, CPUs, idle timeout) from agent.toml when it starts."""
        self.budget = budget

    def current_status(self) -> status.TrainerStatus:
        return status.read(self.status_path)

    def snapshot(self) -> Trainer:
        """The status document plus this supervisor's counters (``/healthz``)."""
        return Trainer(self.current_status(), self.starts, self.kills, self.running)

    # -- internals -------------------------------------------------------------------------
    @staticmethod
    def _bind(path: Path) -> socket.socket:
        sock = procs.bind_unix(path, 0o600)
        sock.set_inheritable(True)  # the trainer it spawns takes over this listener
        return sock

    def _loop(self) -> None:
        if self.cpus:  # a trainer spawned from this thread inherits its CPUs
            agent_cpus.pin_thread(self.cpus, "the trainer supervisor")
        while not self._stop.is_set():
            if self._listener is not None and not self.running:
                readable, _, _ = select.select([self._listener], [], [], POLL_S)
                if readable and not self._stop.is_set():
                    self._spawn()
                continue
            self._watch()
            self._stop.wait(POLL_S)

    def _spawn(self) -> None:
        assert self._listener is not None
        fd = self._listener.fileno()
        env = {**os.environ, "ORCHARD_TRAINER_FD": str(fd)}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._child = subprocess.Popen(
                [*self.command, str(self.config_path)],
                env=env,
                pass_fds=(fd,),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        logger.info("trainer started on demand (pid %d)", self._child.pid)
        self.on_event("trainer_started", {"pid": self._child.pid})

    def _refuse_waiting(self) -> None:
        """Close connections that queued for the killed trainer: their callers learn at once
        (and read why from the status file) instead of waking a new trainer into the same fate.
        """
        if self._listener is None:
            return
        self._listener.setblocking(False)
        try:
            while True:
                conn, _ = self._listener.accept()
                conn.close()
        except (BlockingIOError, OSError):
            pass
        finally:
            self._listener.setblocking(True)

    def _pid(self) -> int | None:
        if self._child is not None:
            return self._child.pid if self._child.poll() is None else None
        pid = status.read(self.status_path).pid
        return pid if pid is not None and psutil.pid_exists(pid) else None

    def _watch(self) -> None:
        pid = self._pid()
        if pid is None:
            return
        try:
            tree = [psutil.Process(pid)]
            tree += tree[0].children(recursive=True)
            usage = [(p.memory_info().rss, _anonymous(p.pid)) for p in tree]
        except (psutil.Error, OSError):
            return
        rss_mb = sum(rss for rss, _ in usage) / 2**20
        anon_mb = sum(anon for _, anon in usage) / 2**20
        current = status.read(self.status_path)
        peak = max(current.peak_rss_mb or 0.0, rss_mb)
        if anon_mb > self.budget.memory_mb:
            reason = (
                f"anonymous memory {anon_mb:.0f} MB (RSS {rss_mb:.0f} MB) > memory_mb "
                f"{self.budget.memory_mb}"
            )
            self._kill(pid, "over_memory", reason, peak)
            return
        if current.request_started is not None:
            elapsed = time.time() - current.request_started
            if elapsed > self.budget.max_seconds + GRACE_S:
                self._kill(
                    pid,
                    "over_time",
                    f"round ran {elapsed:.0f} s > max_seconds {self.budget.max_seconds:g}",
                    peak,
                )

    def _kill(self, pid: int, outcome: str, reason: str, peak: float) -> None:
        logger.warning("stopping the trainer (pid %d): %s", pid, reason)
        # Freeze it, record why, then kill it: the caller's connection closes the moment the
        # trainer dies and the caller reads the reason from the status file at once, so the
        # reason must be there first, and a frozen trainer cannot overwrite it.
        try:
            os.kill(pid, signal.SIGSTOP)
        except OSError:
            return
        stopped = {
            "state": "stopped",
            "pid": None,
            "request_started": None,
            "last_outcome": outcome,
            "last_reason": reason,
            "peak_rss_mb": round(peak, 1),
        }
        try:
            status.update(self.status_path, **stopped)
            recorded = True
        except status.StatusError:  # frozen while holding the status lock: kill, then record
            recorded = False
        with contextlib.suppress(ProcessLookupError):  # gone by itself meanwhile: same outcome
            os.kill(pid, signal.SIGKILL)
        if self._child is not None:
            try:
                self._child.wait(10)
            except subprocess.TimeoutExpired:
                logger.error("trainer pid %d did not die after SIGKILL", pid)
        if not recorded:  # its death released the lock
            status.update(self.status_path, **stopped)
        self.kills += 1
        self._refuse_waiting()
        self.on_event(
            "budget_violation",
            {"outcome": outcome, "reason": reason, "peak_rss_mb": round(peak, 1)},
        )


def _anonymous(pid: int) -> int:
    """Bytes of ``pid``'s RSS the kernel cannot reclaim without swap: anonymous and shmem pages.

    The rest of the RSS is file-backed: for the trainer mostly clean pages of TensorFlow's
    shared library, which a memory cgroup (``MemoryMax=``) drops and re-reads under pressure
    (``benchmarks/trainer.py --limit-mb``).
    """
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssShmem"):
            total += int(value.split()[0]) * 1024
    return total
