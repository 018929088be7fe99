"""CPU placement: the agent's CPU 0 when reserving, the trainer's share, inheritance by children."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from agent import cpus


def test_without_reserving_everyone_shares_and_the_trainer_takes_the_top() -> None:
    assert cpus.agent_cpus([0, 1, 2, 3], reserve=False) == [0, 1, 2, 3]
    assert cpus.worker_cpus([0, 1, 2, 3], reserve=False) == [0, 1, 2, 3]
    assert cpus.trainer_cpus([0, 1, 2, 3], 50, reserve=False) == [2, 3]
    assert cpus.trainer_cpus([0, 1], 50, reserve=False) == [1]
    assert cpus.trainer_cpus([0, 1], 10, reserve=False) == [1]  # at least one
    assert cpus.trainer_cpus([0, 1, 2, 3], 400, reserve=False) == [0, 1, 2, 3]


def test_reserving_keeps_cpu_0_for_the_agent_alone() -> None:
    assert cpus.agent_cpus([0, 1, 2, 3], reserve=True) == [0]
    assert cpus.worker_cpus([0, 1, 2, 3], reserve=True) == [1, 2, 3]
    assert cpus.trainer_cpus([0, 1, 2, 3], 100, reserve=True) == [1, 2, 3]
    assert cpus.trainer_cpus([0, 1], 100, reserve=True) == [1]
    # a trainer that inherited the workers' CPUs computes the same set again
    assert cpus.trainer_cpus([1, 2, 3], 50, reserve=True) == [3]


def test_one_cpu_or_no_cpu_0_leaves_nothing_to_reserve() -> None:
    assert cpus.agent_cpus([0], reserve=True) == [0]
    assert cpus.worker_cpus([0], reserve=True) == [0]
    assert cpus.agent_cpus([2, 3], reserve=True) == [2, 3]
    assert cpus.worker_cpus([2, 3], reserve=True) == [2, 3]


@pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2 or 0 not in os.sched_getaffinity(0),
    reason="needs CPU 0 and another",
)
def test_a_process_started_by_a_pinned_thread_inherits_its_cpus_and_others_do_not() -> None:
    before = os.sched_getaffinity(0)
    workers = cpus.worker_cpus(sorted(before), reserve=True)
    seen: dict[str, set[int]] = {}

    def supervisor() -> None:  # as the trainer and SuperNode supervisors do
        cpus.pin_thread(workers, "test supervisor")
        seen["thread"] = os.sched_getaffinity(0)
        child = subprocess.run(
            [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        seen["child"] = set(json.loads(child.stdout))

    thread = threading.Thread(target=supervisor)
    thread.start()
    thread.join(60)
    assert seen["thread"] == set(workers) and seen["child"] == set(workers)
    assert 0 not in seen["child"]
    assert os.sched_getaffinity(0) == before  # the calling thread only
