"""The trainer's accept loop: one request at a time, exit after an idle timeout.

The listening socket comes from systemd socket activation (``LISTEN_FDS``), from the agent's
supervisor (``ORCHARD_TRAINER_FD``, the same idea without systemd), or is bound here.
Before TensorFlow is imported the process lowers its own priority and CPU share: nice,
``SCHED_IDLE`` and CPU affinity sized from ``cpu_quota_pct`` so inference keeps its core
(:mod:`agent.cpus`; with ``reserve_agent_cpu`` never the agent's CPU 0).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agent import cpus
from agent.federation import wire
from agent.federation.trainer_api import TrainerReply
from orchard_common import procs

logger = logging.getLogger(__name__)

SD_LISTEN_FDS_START = 3
Handler = Callable[[dict[str, Any], list[np.ndarray]], tuple[dict[str, Any], list[np.ndarray]]]


def listener(path: Path) -> socket.socket:
    """The listening socket: inherited from systemd or the agent, else bound at ``path``."""
    if os.environ.get("LISTEN_FDS") and os.environ.get("LISTEN_PID") in (None, str(os.getpid())):
        return socket.socket(fileno=SD_LISTEN_FDS_START)
    fd = os.environ.get("ORCHARD_TRAINER_FD")
    if fd:
        return socket.socket(fileno=int(fd))
    return procs.bind_unix(path, 0o660, backlog=4)


def lower_priority(
    nice: int, cpu_quota_pct: int, reserve_agent_cpu: bool = False, idle: bool = True
) -> int:
    """Nice, idle scheduling (``idle``) and the CPUs of :func:`agent.cpus.trainer_cpus`;
    returns the number of threads to use."""
    try:
        os.nice(max(0, nice - os.nice(0)))
    except OSError as exc:
        logger.warning("cannot renice the trainer: %s", exc)
    if idle:
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except (OSError, AttributeError) as exc:
            logger.info("SCHED_IDLE unavailable: %s", exc)
    mine = cpus.trainer_cpus(cpus.available(), cpu_quota_pct, reserve_agent_cpu)
    cpus.pin_thread(mine, "the trainer")
    return len(mine)


def serve(
    sock: socket.socket,
    handler: Handler,
    *,
    idle_timeout_s: float,
    on_error: Callable[[BaseException], tuple[int, str]],
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Answer requests until nobody has asked for ``idle_timeout_s`` seconds."""
    last = time.monotonic()
    sock.settimeout(min(1.0, idle_timeout_s))
    while not should_stop():
        try:
            conn, _ = sock.accept()
        except TimeoutError:
            if time.monotonic() - last >= idle_timeout_s:
                logger.info("trainer idle for %.0f s: exiting", idle_timeout_s)
                return
            continue
        with conn:
            conn.settimeout(60.0)
            try:
                header, arrays = wire.recv(conn)
            except wire.WireError as exc:
                logger.warning("bad request frame: %s", exc)
                continue
            conn.settimeout(None)
            try:
                reply, out = handler(header, arrays)
            except Exception as exc:  # reported to the caller, the trainer stays up
                code, message = on_error(exc)
                reply, out = TrainerReply.failed(code, message).encode(), []
            try:
                wire.send(conn, reply, out)
            except wire.WireError as exc:
                logger.warning("could not reply: %s", exc)
        last = time.monotonic()
