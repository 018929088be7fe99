"""The trainer watchdog's memory budget counts what the kernel cannot reclaim.

Two stand-in trainers (real processes): one with a large RSS made of TensorFlow's own shared
library, mapped and read (clean file pages, as a real trainer's RSS mostly is), and one with
anonymous memory over the budget. Only the second is over ``memory_mb``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from agent import config as agent_config
from agent.federation import status
from agent.federation.trainer_supervisor import TrainerSupervisor

STAND_IN = """
import mmap, sys, time
lib, touch_mb, anon_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(lib, "rb") as f:
    mapped = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
total = sum(mapped[i] for i in range(0, min(len(mapped), touch_mb << 20), 4096))
block = bytearray(anon_mb << 20)
for i in range(0, len(block), 4096):
    block[i] = 1  # written pages are resident
print("ready", flush=True)
time.sleep(120)
"""


def _library() -> Path:
    spec = importlib.util.find_spec("tensorflow")
    assert spec is not None and spec.origin is not None
    libs = sorted(Path(spec.origin).parent.glob("libtensorflow_cc.so*"))
    assert libs, "TensorFlow's shared library not found"
    return libs[0]


@pytest.fixture
def stand_in(device_dir: Path) -> Iterator[object]:
    procs: list[subprocess.Popen[str]] = []

    def start(touch_mb: int, anon_mb: int) -> psutil.Process:
        proc = subprocess.Popen(
            [sys.executable, "-c", STAND_IN, str(_library()), str(touch_mb), str(anon_mb)],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        status.update(status.path_for(device_dir), state="training", pid=proc.pid)
        return psutil.Process(proc.pid)

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(10)


def _supervisor(device_dir: Path, memory_mb: int) -> TrainerSupervisor:
    cfg = agent_config.load(device_dir / "agent.toml")
    budget = dataclasses.replace(cfg.training, memory_mb=memory_mb)
    return TrainerSupervisor(
        cfg.federation, budget, config_path=device_dir / "agent.toml", state_dir=cfg.state_dir
    )


def test_clean_library_pages_do_not_count_against_the_budget(device_dir: Path, stand_in) -> None:  # type: ignore[no-untyped-def]
    proc = stand_in(touch_mb=300, anon_mb=0)
    assert proc.memory_info().rss > 250 * 2**20  # RSS well over the budget below
    sup = _supervisor(device_dir, memory_mb=120)
    sup._watch()  # one watchdog pass, as the supervisor's loop makes every 0.25 s
    assert sup.kills == 0 and proc.is_running() and proc.status() != psutil.STATUS_STOPPED


def test_anonymous_memory_over_the_budget_is_stopped(device_dir: Path, stand_in) -> None:  # type: ignore[no-untyped-def]
    proc = stand_in(touch_mb=0, anon_mb=200)
    sup = _supervisor(device_dir, memory_mb=120)
    sup._watch()
    assert sup.kills == 1
    proc.wait(10)
    st = status.read(status.path_for(device_dir))
    assert st.last_outcome == "over_memory" and st.last_reason is not None
    assert "anonymous memory" in st.last_reason and "memory_mb 120" in st.last_reason
