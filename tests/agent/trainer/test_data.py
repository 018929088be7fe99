from __future__ import annotations

from pathlib import Path

import pytest

from agent.store import open_store
from agent.store.options import StoreSettings
from agent.trainer.data import NoDataError, load
from models.spec import InputSpec, ModelSpec, Task
from tests.agent.trainer.conftest import SPEC, seed_store


def test_validation_is_the_newest_fifth(tmp_path: Path) -> None:
    seed_store(tmp_path / "s.db", n=400)
    store = open_store(StoreSettings(path=tmp_path / "s.db"))
    data = load(store, SPEC)
    assert data.examples == 320 and len(data.x_val) == 80
    assert data.y_train is not None and data.y_train.max() < 3


def test_too_little_data_and_missing_features_are_clear(tmp_path: Path) -> None:
    seed_store(tmp_path / "s.db", n=10)
    store = open_store(StoreSettings(path=tmp_path / "s.db"))
    with pytest.raises(NoDataError, match="at least 20 usable examples"):
        load(store, SPEC)
    other = ModelSpec("mlp", Task.ANOMALY, InputSpec.tabular(("vibration_g",)))
    with pytest.raises(NoDataError, match="vibration_g"):
        load(store, other)
