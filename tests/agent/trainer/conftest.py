from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from agent.sensors import synthetic
from agent.store import open_store
from agent.store.options import StoreOptions
from agent.types import Sample
from models.spec import InputSpec, ModelSpec, Task

SPEC = ModelSpec(
    "mlp", Task.CLASSIFY, InputSpec.tabular(synthetic.FEATURE_NAMES), labels=synthetic.LABELS
)


def seed_store(path: Path, n: int = 400, device_index: int = 0) -> None:
    d = synthetic.generate(n, seed=3, device_index=device_index, step_s=60.0)
    labels = np.array(synthetic.LABELS)[d.y]
    store = open_store(StoreOptions(path=path))
    now = time.time() - n * 60
    store.append_many(
        Sample(
            ts=now + i * 60,
            values=dict(zip(synthetic.FEATURE_NAMES, map(float, d.x[i]), strict=True)),
            label=str(labels[i]),
        )
        for i in range(n)
    )  # fmt: skip
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
