"""Which CPUs the agent, the trainer and Flower's processes run on.

By default everyone shares the board's CPUs and priority does the work: the trainer is niced,
``SCHED_IDLE`` and limited to ``training.cpu_quota_pct`` of the CPUs (the highest-numbered),
Flower's SuperNode and ClientApps are niced. With ``training.reserve_agent_cpu = true`` on a
board with two or more CPUs, CPU 0 is the agent's alone: the agent's threads run there and
nothing else of Orchard does. The trainer, the SuperNode and the ClientApps it starts run on the
other CPUs, so a prediction never waits behind them for a core (docs/federated.md, part 4).

Affinity is per thread on Linux and a child inherits its creator's: the agent pins its main
thread before it starts any other, and each supervisor thread moves itself to the worker CPUs
before it starts a process, so nothing has to be changed in a running child.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable

logger = logging.getLogger(__name__)

AGENT_CPU = 0


def available() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def agent_cpus(cpus: Iterable[int], reserve: bool) -> list[int]:
    """The agent's CPUs: only CPU 0 when reserving (and there is another), else all."""
    cpus = sorted(cpus)
    if reserve and AGENT_CPU in cpus and len(cpus) >= 2:
        return [AGENT_CPU]
    return cpus


def worker_cpus(cpus: Iterable[int], reserve: bool) -> list[int]:
    """CPUs for the trainer and Flower's processes: all but the agent's when reserving."""
    cpus = sorted(cpus)
    if reserve and AGENT_CPU in cpus and len(cpus) >= 2:
        return [c for c in cpus if c != AGENT_CPU]
    return cpus


def trainer_cpus(cpus: Iterable[int], cpu_quota_pct: int, reserve: bool) -> list[int]:
    """``cpu_quota_pct`` of ``cpus`` (at least one), highest-numbered, never the agent's.

    CPU 0 takes most interrupts and, unpinned, most of the agent's threads, so the trainer takes
    the top of the range either way.
    """
    cpus = sorted(cpus)
    share = max(1, math.floor(len(cpus) * cpu_quota_pct / 100))
    workers = worker_cpus(cpus, reserve)
    return workers[-min(share, len(workers)) :]


def pin_thread(cpus: list[int], what: str) -> None:
    """Run the calling thread (and the threads and processes it starts) on ``cpus``."""
    if sorted(cpus) == available():
        return
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as exc:
        logger.warning("cannot pin %s to CPUs %s: %s", what, cpus, exc)
        return
    logger.info("%s runs on CPUs %s", what, ",".join(map(str, cpus)))
