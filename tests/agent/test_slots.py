"""ModelSlots: A/B slots, verified installs, rollback at load, and SIGKILL at any install step."""

from __future__ import annotations

import hashlib
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.errors import ConfigError, ModelSlotError
from agent.slots import ACTIVE_FILE, INCOMING_DIR, VERIFYING_FILE, ModelSlots
from models.manifest import MANIFEST_FILE, MODEL_FILE, Manifest
from tests.agent.serve.bundles import Bundles, bundles, copy_bundle, edit_manifest, sync_file_fields
from tests.fuzz.corpus import inflate

__all__ = ["bundles"]  # the session fixture, shared with tests/agent/serve

REPO = Path(__file__).resolve().parents[2]
STEPS_OLD = ("staging", "copied_model", "staged", "verifying", "verified", "cleared", "renamed")
STEPS_NEW = ("activated",)


class Events(list[tuple[str, dict[str, Any]]]):
    def __call__(self, name: str, payload: dict[str, Any]) -> None:
        self.append((name, payload))

    def names(self) -> list[str]:
        return [n for n, _ in self]


def tree_digest(root: Path) -> str:
    """Hash of every file under the slots (not .incoming), to prove a refusal touched nothing."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and INCOMING_DIR not in p.parts:
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def golden_ok(slots: ModelSlots) -> None:
    predictor = slots.current()
    assert predictor is not None
    m = predictor.manifest
    got = predictor.predict(np.asarray(m.golden_inputs, np.float32))
    np.testing.assert_allclose(got, np.asarray(m.golden_outputs), atol=m.golden_atol)


def test_an_empty_root_serves_nothing(tmp_path: Path) -> None:
    events = Events()
    slots = ModelSlots(tmp_path / "models", on_event=events)
    assert slots.load() is None
    assert slots.current() is None
    assert slots.info()["model"] is None and slots.info()["slot"] is None
    assert events.names() == ["no_model"]


def test_install_alternates_slots_and_survives_restart(tmp_path: Path, bundles: Bundles) -> None:
    root = tmp_path / "models"
    events = Events()
    slots = ModelSlots(root, on_event=events)
    slots.load()
    v1 = slots.install(bundles("mlp", "classify", "float32", "1"))
    assert (v1.version, slots.info()["slot"]) == ("1", "slot-a")
    assert (root / ACTIVE_FILE).read_text().strip() == "slot-a"
    golden_ok(slots)
    v2 = slots.install(bundles("mlp", "classify", "int8", "2"))
    assert (v2.version, slots.info()["slot"]) == ("2", "slot-b")
    assert (root / ACTIVE_FILE).read_text().strip() == "slot-b"
    assert Manifest.load(root / "slot-a" / MANIFEST_FILE).version == "1"  # kept for rollback
    assert not (root / INCOMING_DIR).exists()
    name, payload = events[-1]
    assert name == "model_swapped"
    assert payload == {
        "version": "2",
        "sha256": v2.sha256,
        "quantization": "int8",
        "slot": "slot-b",
    }
    assert slots.info()["swaps"] == 2

    again = ModelSlots(root)
    predictor = again.load()
    assert predictor is not None and predictor.manifest.version == "2"
    assert predictor.path == root / "slot-b"
    golden_ok(again)


def test_only_the_model_file_and_manifest_are_copied(tmp_path: Path, bundles: Bundles) -> None:
    candidate = copy_bundle(bundles(), tmp_path / "cand")
    (candidate / "model.keras").write_bytes(b"x" * 1000)
    slots = ModelSlots(tmp_path / "models")
    slots.install(candidate)
    assert sorted(p.name for p in (tmp_path / "models" / "slot-a").iterdir()) == [
        MANIFEST_FILE,
        MODEL_FILE,
    ]


def damage(kind: str, good: Path, dst: Path) -> Path:
    if kind == "not_a_dir":
        return dst / "nothing-here"
    b = copy_bundle(good, dst)
    model = b / MODEL_FILE
    data = model.read_bytes()
    if kind == "truncated":
        model.write_bytes(data[: len(data) // 2])
    elif kind == "flipped":
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0xFF
        model.write_bytes(bytes(flipped))
    elif kind == "not_tflite":
        model.write_bytes(os.urandom(len(data)))
        sync_file_fields(b)
    elif kind == "mismatched":
        edit_manifest(b, tensors__input__shape=[-1, 7])
    elif kind == "golden":
        m = Manifest.load(b / MANIFEST_FILE)
        edit_manifest(b, golden__outputs=[[v + 1.0 for v in row] for row in m.golden_outputs])
    elif kind == "no_golden":
        edit_manifest(b, golden__inputs=[], golden__outputs=[])
    elif kind == "no_manifest":
        (b / MANIFEST_FILE).unlink()
    elif kind == "bad_json":
        (b / MANIFEST_FILE).write_text("{")
    elif kind == "missing_model":
        model.unlink()
    elif kind == "traversal":
        edit_manifest(b, file__name="../model.tflite")
    return b


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("truncated", "truncated"),
        ("flipped", "sha256"),
        ("not_tflite", "TFL3"),
        ("mismatched", "expected input tensor"),
        ("golden", "golden outputs within"),
        ("no_golden", "golden samples"),
        ("no_manifest", "manifest file"),
        ("bad_json", "JSON manifest"),
        ("missing_model", "model file"),
        ("traversal", "plain file name"),
        ("not_a_dir", "manifest file"),
    ],
)
def test_a_refused_candidate_changes_nothing(
    tmp_path: Path, bundles: Bundles, kind: str, words: str
) -> None:
    root = tmp_path / "models"
    events = Events()
    slots = ModelSlots(root, on_event=events)
    slots.install(bundles("mlp", "classify", "float32", "1"))
    slots.install(bundles("mlp", "classify", "int8", "2"))
    serving, before = slots.current(), tree_digest(root)
    candidate = damage(kind, bundles("mlp", "regress"), tmp_path / "bad")

    with pytest.raises(ModelSlotError, match=words) as info:
        slots.install(candidate)
    assert str(candidate) in str(info.value)
    assert slots.current() is serving
    assert tree_digest(root) == before
    assert not (root / INCOMING_DIR).exists()
    name, payload = events[-1]
    assert name == "model_rejected" and words in payload["reason"]
    assert slots.info()["rejected"] == 1 and words in slots.info()["last_error"]
    golden_ok(slots)
    assert ModelSlots(root).load().manifest.version == "2"  # type: ignore[union-attr]


def test_the_latency_bound_refuses_slow_models(tmp_path: Path, bundles: Bundles) -> None:
    slots = ModelSlots(tmp_path / "models", latency_bound_ms=1e-6)
    with pytest.raises(ModelSlotError, match="single-sample predict under"):
        slots.install(bundles())
    assert slots.current() is None
    assert not (tmp_path / "models" / ACTIVE_FILE).exists()


# -- verification in a child process ----------------------------------------------------------


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


def test_load_rolls_back_from_a_damaged_active_slot(tmp_path: Path, bundles: Bundles) -> None:
    root = tmp_path / "models"
    first = ModelSlots(root)
    first.install(bundles("mlp", "classify", "float32", "1"))
    first.install(bundles("mlp", "classify", "int8", "2"))
    model = root / "slot-b" / MODEL_FILE
    model.write_bytes(model.read_bytes()[:-10])

    events = Events()
    slots = ModelSlots(root, on_event=events)
    predictor = slots.load()
    assert predictor is not None and predictor.manifest.version == "1"
    assert events.names() == ["model_load_failed", "rollback", "model_loaded"]
    assert events[1][1]["from"] == "slot-b" and events[1][1]["to"] == "slot-a"
    assert (root / ACTIVE_FILE).read_text().strip() == "slot-a"
    slots.install(bundles("mlp", "regress"))  # goes over the broken slot, keeps slot-a
    assert slots.info()["slot"] == "slot-b"
    assert Manifest.load(root / "slot-a" / MANIFEST_FILE).version == "1"


def test_load_never_raises(tmp_path: Path, bundles: Bundles) -> None:
    root = tmp_path / "models"
    ModelSlots(root).install(bundles())
    (root / ACTIVE_FILE).write_text("slot-z\n")  # garbage: both slots are tried
    assert ModelSlots(root).load() is not None
    (root / "slot-a" / MANIFEST_FILE).write_text("not json")
    (root / INCOMING_DIR).mkdir()
    (root / f".{ACTIVE_FILE}.x.tmp").write_text("half")
    events = Events()
    slots = ModelSlots(root, on_event=events)
    assert slots.load() is None
    assert events.names() == ["model_load_failed", "no_model"]
    assert not (root / INCOMING_DIR).exists()
    assert not list(root.glob(".ACTIVE.*"))


def test_a_failing_event_handler_does_not_stop_an_install(
    tmp_path: Path, bundles: Bundles, caplog: pytest.LogCaptureFixture
) -> None:
    def handler(name: str, payload: dict[str, Any]) -> None:
        raise RuntimeError("handler bug")

    slots = ModelSlots(tmp_path / "models", on_event=handler)
    assert slots.install(bundles()).version == "1"
    assert "event handler failed" in caplog.text


def test_a_schema_change_is_logged(
    tmp_path: Path, bundles: Bundles, caplog: pytest.LogCaptureFixture
) -> None:
    slots = ModelSlots(tmp_path / "models")
    slots.install(bundles("mlp", "classify"))
    with caplog.at_level(logging.WARNING, logger="agent.slots"):
        slots.install(bundles("cnn1d", "forecast"))
    assert "changes its schema" in caplog.text and "input shape" in caplog.text


# -- crash safety ------------------------------------------------------------------------------

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
