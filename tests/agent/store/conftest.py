"""Fixtures shared by the store tests: a fake clock and a factory for either store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.store import MemoryStore, SqliteStore, Store, StoreSettings
from agent.types import Sample
from tests.fakes import FakeClock

StoreFactory = Callable[..., Store]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", "memory"])
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[StoreFactory]:
    """Build a store of the parametrised kind; every store built is closed at teardown."""
    built: list[Store] = []

    def factory(**limits: Any) -> Store:
        limits.setdefault("retention_interval_s", 0.0)
        options = StoreSettings(path=tmp_path / f"store-{len(built)}.db", **limits)
        store: Store
        if request.param == "sqlite":
            store = SqliteStore(options, clock=clock)
        else:
            store = MemoryStore(options, clock=clock)
        built.append(store)
        return store

    yield factory
    for store in built:
        store.close()


def ramp(
    n: int, *, start: float = 0.0, step: float = 1.0, label: str | None = None
) -> list[Sample]:
    """``n`` samples with a = i, b = 10 * i at ts = start + i * step."""
    return [
        Sample(ts=start + i * step, values={"a": float(i), "b": 10.0 * i}, label=label)
        for i in range(n)
    ]
