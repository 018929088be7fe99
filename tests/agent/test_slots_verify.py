"""ModelSlots: a candidate is verified in a child process, under a memory limit and a timeout."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from agent.errors import ConfigError, ModelSlotError
from agent.slots import ACTIVE_FILE, INCOMING_DIR, VERIFYING_FILE, ModelSlots
from models.manifest import MODEL_FILE
from tests.agent.serve.bundles import Bundles, bundles, copy_bundle, sync_file_fields
from tests.agent.slot_helpers import Events, golden_ok, tree_digest
from tests.fuzz.corpus import inflate

__all__ = ["bundles"]  # the session fixture, shared with tests/agent/serve


def memory_bomb(good: Path, dst: Path, rows: int) -> Path:
    """``good`` with one activation declared ``rows`` rows tall; its manifest agrees."""
    bomb = copy_bundle(good, dst)
    model = bomb / MODEL_FILE
    model.write_bytes(inflate(model.read_bytes(), rows))
    sync_file_fields(bomb)
    return bomb


def test_a_memory_bomb_is_refused_in_the_child(tmp_path: Path, bundles: Bundles) -> None:
    root = tmp_path / "models"
    events = Events()
    slots = ModelSlots(root, on_event=events)
    slots.install(bundles())
    serving, before = slots.current(), tree_digest(root)
    bomb = memory_bomb(bundles(), tmp_path / "bomb", rows=2**23)  # LiteRT would map ~350 MB

    with pytest.raises(ModelSlotError, match="memory limit of 128 MB"):
        slots.install(bomb)
    assert slots.current() is serving and tree_digest(root) == before
    assert events[-1][0] == "model_rejected" and "LiteRT" in events[-1][1]["reason"]
    assert not (root / INCOMING_DIR).exists() and not (root / VERIFYING_FILE).exists()
    golden_ok(slots)


def test_the_memory_limit_is_what_refuses(tmp_path: Path, bundles: Bundles) -> None:
    bomb = memory_bomb(bundles(), tmp_path / "bomb", rows=2**20)  # LiteRT maps ~40 MB more
    tight = ModelSlots(tmp_path / "tight", verify_memory_mb=16, latency_bound_ms=1000)
    with pytest.raises(ModelSlotError, match="memory limit of 16 MB"):
        tight.install(bomb)
    assert tight.current() is None and not (tmp_path / "tight" / ACTIVE_FILE).exists()
    roomy = ModelSlots(tmp_path / "roomy", latency_bound_ms=1000)  # the default: 128 MB
    assert roomy.install(bomb).version == "1"


def test_a_verification_over_its_timeout_is_refused(tmp_path: Path, bundles: Bundles) -> None:
    slots = ModelSlots(tmp_path / "models", verify_timeout_s=0.01)
    with pytest.raises(ModelSlotError, match=r"within 0\.01 s"):
        slots.install(bundles())
    assert slots.current() is None and not (tmp_path / "models" / INCOMING_DIR).exists()


def verifier_pids() -> list[int]:
    """This process's children running ``agent.verify_child``."""
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines())
            cmdline = (status.parent / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue  # the process ended while we read it
        if int(fields.get("PPid", "0")) == os.getpid() and b"agent.verify_child" in cmdline:
            pids.append(int(status.parent.name))
    return pids


def test_a_verifier_killed_by_a_signal_is_named(tmp_path: Path, bundles: Bundles) -> None:
    events = Events()
    slots = ModelSlots(tmp_path / "models", on_event=events)
    outcome: list[BaseException] = []

    def install() -> None:
        try:
            slots.install(bundles())
        except ModelSlotError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=install)
    worker.start()
    deadline = time.monotonic() + 30
    while not (pids := verifier_pids()):
        assert time.monotonic() < deadline and worker.is_alive(), "no verifying child seen"
        time.sleep(0.002)  # polling another process, bounded by the deadline
    os.kill(pids[0], signal.SIGKILL)  # as the OOM killer would
    worker.join(30)
    assert [str(e) for e in outcome] == [
        f"model candidate {bundles()} refused: verification was killed by SIGKILL, probably "
        "out of memory (limit: 128 MB over the runtime) or a crash in LiteRT"
    ]
    assert events.names() == ["model_rejected"] and slots.current() is None


def test_the_verifier_settings_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="verify_memory_mb: expected a positive number"):
        ModelSlots(tmp_path, verify_memory_mb=0)
    with pytest.raises(ConfigError, match="Received: verify_timeout_s=-1"):
        ModelSlots(tmp_path, verify_timeout_s=-1)
