"""What the ModelSlots tests share (tests/agent/test_slots*.py): an event recorder and checks."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from agent.slots import INCOMING_DIR, ModelSlots


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
