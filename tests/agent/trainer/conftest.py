from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from agent.sensors import synthetic
from agent.store import open_store
from agent.store.options import StoreSettings
from agent.types import Sample
from models.spec import InputSpec, ModelSpec, Task

SPEC = ModelSpec(
    "mlp", Task.CLASSIFY, InputSpec.tabular(synthetic.FEATURE_NAMES), labels=synthetic.LABELS
)


def seed_store(path: Path, n: int = 400, device_index: int = 0) -> None:
    """``n`` labelled rows with the classes in equal shares, in random time order.

    A synthetic device is mostly 'empty' (about three quarters of any stretch), so a model
    that always answers 'empty' would look good on a time-split validation set. Drawing the
    classes evenly from a long stream makes the majority baseline 1/3, so "learned" means
    learned.
    """
    d = synthetic.generate(max(n * 8, 200), seed=3, device_index=device_index, step_s=300.0)
    rng = np.random.default_rng(3)
    per_class = -(-n // len(synthetic.LABELS))
    classes = range(len(synthetic.LABELS))
    picked = np.concatenate(
        [rng.permutation(np.flatnonzero(d.y == k))[:per_class] for k in classes]
    )
    picked = rng.permutation(picked)[:n]
    assert len(picked) == n, "the synthetic stream is too short for a balanced draw"
    labels = np.array(synthetic.LABELS)[d.y]
    store = open_store(StoreSettings(path=path))
    now = time.time() - n * 60
    store.append_many(
        Sample(
            ts=now + i * 60,
            values=dict(zip(synthetic.FEATURE_NAMES, map(float, d.x[row]), strict=True)),
            label=str(labels[row]),
        )
        for i, row in enumerate(picked)
    )
    store.close()


@pytest.fixture
def device_dir(tmp_path: Path) -> Path:
    """A device directory with a seeded store and an agent.toml (federation enabled)."""
    seed_store(tmp_path / "store.db")
    (tmp_path / "agent.toml").write_text(
        tomli_w.dumps(
            {
                "device_id": "t1",
                "state_dir": str(tmp_path),
                "sensors": {"live": {"driver": "synthetic", "interval_s": 1.0}},
                "federation": {"enabled": True, "trainer_socket": str(tmp_path / "t.sock")},
                "training": {"memory_mb": 4096, "max_seconds": 120, "idle_timeout_s": 60},
            }
        )
    )
    return tmp_path
