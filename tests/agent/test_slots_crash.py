"""ModelSlots: SIGKILL at any install step leaves the old model or the new one, never a part.

A child process installs with a step hook that SIGKILLs itself at one named step (or the test
kills it at random moments); the next ModelSlots must load a complete model.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agent.errors import ModelSlotError
from agent.slots import INCOMING_DIR, VERIFYING_FILE, ModelSlots
from tests.agent.serve.bundles import Bundles, bundles, copy_bundle
from tests.agent.slot_helpers import Events, golden_ok

__all__ = ["bundles"]  # the session fixture, shared with tests/agent/serve

REPO = Path(__file__).resolve().parents[2]
STEPS_OLD = ("staging", "copied_model", "staged", "verifying", "verified", "cleared", "renamed")
STEPS_NEW = ("activated",)


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from agent.slots import ModelSlots

    root, step, candidates = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    slots = ModelSlots(root)
    slots.load()

    def hook(name):
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

    slots._step_hook = hook
    print("ready", flush=True)
    i = 0
    while True:
        try:
            manifest = slots.install(Path(candidates[i % len(candidates)]))
            print(manifest.version, flush=True)
        except Exception:  # refused once: killed while verifying it in the previous child
            print("refused", flush=True)
        i += 1
        if step != "loop":
            break
    """
)


def child(root: Path, step: str, *candidates: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), step, *map(str, candidates)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )


def read_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


@pytest.mark.parametrize("step", [*STEPS_OLD, *STEPS_NEW])
def test_sigkill_at_each_install_step_leaves_old_or_new(
    tmp_path: Path, bundles: Bundles, step: str
) -> None:
    root = tmp_path / "models"
    ModelSlots(root).install(bundles("mlp", "classify", "float32", "1"))
    proc = child(root, step, bundles("mlp", "classify", "int8", "2"))
    try:
        assert read_line(proc) == "ready"
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    slots = ModelSlots(root)
    predictor = slots.load()
    assert predictor is not None
    assert predictor.manifest.version == ("1" if step in STEPS_OLD else "2")
    golden_ok(slots)
    assert not (root / INCOMING_DIR).exists()
    slots.install(bundles("mlp", "regress"))  # and installs keep working afterwards
    assert ModelSlots(root).load().manifest.version == "1"  # type: ignore[union-attr]


def test_sigkill_at_random_moments_never_leaves_a_partial_model(
    tmp_path: Path, bundles: Bundles
) -> None:
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    root = tmp_path / "models"
    ModelSlots(root).install(bundles("mlp", "classify", "float32", "1"))
    candidates = (bundles("mlp", "classify", "int8", "2"), bundles("cnn1d", "forecast"))
    completed = 0
    for _ in range(6):
        proc = child(root, "loop", *candidates)
        try:
            assert read_line(proc) == "ready", f"seed={seed}"
            # an install now verifies in a child (~0.2 s, more under load): kill anywhere
            # from the first verification to several installs in
            time.sleep(rng.uniform(0.0, 1.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            assert proc.stdout is not None
            completed += sum(w != "refused" for w in proc.stdout.read().split())
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        slots = ModelSlots(root)
        predictor = slots.load()
        assert predictor is not None, f"seed={seed}"
        assert predictor.manifest.version in ("1", "2"), f"seed={seed}"
        golden_ok(slots)
    assert completed > 0, f"no install ever completed, seed={seed}"


def killed_while_verifying(root: Path, candidate: Path) -> None:
    proc = child(root, "verifying", candidate)
    try:
        assert read_line(proc) == "ready"
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert (root / VERIFYING_FILE).exists()


def test_a_candidate_the_process_died_verifying_is_refused_not_retried(
    tmp_path: Path, bundles: Bundles
) -> None:
    root = tmp_path / "models"
    ModelSlots(root).install(bundles("mlp", "classify", "float32", "1"))
    candidate = copy_bundle(bundles("mlp", "classify", "int8", "2"), tmp_path / "inbox" / "c")
    killed_while_verifying(root, candidate)

    events = Events()
    slots = ModelSlots(root, on_event=events)
    assert slots.load().manifest.version == "1"  # type: ignore[union-attr]
    assert (root / VERIFYING_FILE).exists()  # the candidate is still there: remembered
    with pytest.raises(ModelSlotError, match="stopped while verifying this candidate"):
        slots.install(candidate)
    assert events.names() == ["model_loaded", "model_rejected"]
    assert not (root / VERIFYING_FILE).exists()
    assert slots.install(bundles("mlp", "regress")).version == "1"  # others install as usual


def test_the_marker_is_forgotten_when_the_candidate_is_gone(
    tmp_path: Path, bundles: Bundles
) -> None:
    root = tmp_path / "models"
    ModelSlots(root).install(bundles("mlp", "classify", "float32", "1"))
    candidate = copy_bundle(bundles("mlp", "classify", "int8", "2"), tmp_path / "inbox" / "c")
    killed_while_verifying(root, candidate)
    shutil.rmtree(candidate)

    slots = ModelSlots(root)
    assert slots.load().manifest.version == "1"  # type: ignore[union-attr]
    assert not (root / VERIFYING_FILE).exists()
    copy_bundle(bundles("mlp", "classify", "int8", "2"), candidate)  # delivered again
    assert slots.install(candidate).version == "2"
