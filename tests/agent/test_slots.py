"""ModelSlots: A/B slots, verified installs, refused candidates, rollback at load, events.

Verification in a child process: test_slots_verify.py; SIGKILL at any install step:
test_slots_crash.py.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

from agent.errors import ModelSlotError
from agent.slots import ACTIVE_FILE, INCOMING_DIR, ModelSlots
from models.manifest import MANIFEST_FILE, MODEL_FILE, Manifest
from tests.agent.serve.bundles import Bundles, bundles, copy_bundle, edit_manifest, sync_file_fields
from tests.agent.slot_helpers import Events, golden_ok, tree_digest

__all__ = ["bundles"]  # the session fixture, shared with tests/agent/serve


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
