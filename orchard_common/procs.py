"""Process plumbing every Orchard process shares: stopping a child, backing off, a unix socket.

    stop(proc, timeout)          SIGTERM, wait, then SIGKILL and wait: never leaves it running
    Backoff(min_s, max_s)        exponential delays between retries, reset after a good spell
    bind_unix(path, mode)        a listening stream socket at ``path`` (a stale one replaced)

One place for each, in the spirit of Flower's ``retry_invoker``: the agent's SuperNode and
trainer supervisors, the trainer's own listener, the MQTT negotiation, the coordinator's
SuperLink and the demo's device processes use these.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str] | None, timeout: float) -> None:
    """Terminate ``proc`` (if it still runs), then kill it after ``timeout`` seconds.

    Never raises for a slow death: a killed process that the kernel has not let go of within
    another ``timeout`` (uninterruptible I/O on a loaded machine) is logged, and reaped by the
    next ``poll()``.
    """
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
        return
    except subprocess.TimeoutExpired:
        logger.warning("pid %d ignored SIGTERM for %.0f s: killing it", proc.pid, timeout)
    proc.kill()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        logger.error("pid %d still there %.0f s after SIGKILL", proc.pid, timeout)


@dataclass
class Backoff:
    """Delays ``min_s``, ``2 min_s``, ... up to ``max_s``; :meth:`reset` starts over."""

    min_s: float
    max_s: float
    factor: float = 2.0
    current: float = field(init=False)

    def __post_init__(self) -> None:
        if not 0 < self.min_s <= self.max_s or self.factor < 1:
            raise ValueError(
                "expected 0 < min_s <= max_s and factor >= 1. Received: "
                f"min_s={self.min_s}, max_s={self.max_s}, factor={self.factor}"
            )
        self.current = self.min_s

    def next(self) -> float:
        """The delay to wait now; the one after it grows."""
        delay = self.current
        self.current = min(self.current * self.factor, self.max_s)
        return delay

    def reset(self) -> None:
        self.current = self.min_s


def bind_unix(path: Path, mode: int, backlog: int = 8) -> socket.socket:
    """A listening ``AF_UNIX`` stream socket at ``path`` with ``mode`` (a stale file replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, mode)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock
