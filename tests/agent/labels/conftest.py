"""Fixtures of the label tests: exported bundles, and a serving agent over real HTTP.

``make_agent(model, store=..., settings=...)`` starts the agent's HTTP app on a free loopback
port (uvicorn, as ``orchard-agent run`` does) with a model installed, a store and a label
service; ``agent.client`` is an httpx client. Everything is stopped at teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.labels import LabelService, LabelSettings
from agent.metrics import AgentMetrics
from agent.serve import HttpServer, HttpSettings, create_app
from agent.slots import ModelSlots
from agent.store import MemoryStore, SqliteStore, Store, StoreSettings
from agent.types import Sample
from models.manifest import Manifest
from tests.agent.serve.bundles import Bundles, bundles
from tests.fakes import FakeClock

__all__ = ["bundles"]

ROOM = ("temp_c", "humidity_pct", "pressure_hpa", "light_lux", "co2_ppm")
X = [21.3, 45.0, 1013.2, 120.0, 450.0]
T0 = 1_700_000_000.0


class Agent:
    """The serving part of an agent: slots, store, label service and a real HTTP server."""

    def __init__(
        self,
        root: Path,
        store: Store,
        settings: LabelSettings,
        monotonic: FakeClock,
    ) -> None:
        self.root = root
        self.closed = False
        self.store = store
        self.slots = ModelSlots(root / "models", on_event=self._slot_event)
        self.slots.load()
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.forward: Callable[[str, dict[str, Any]], object] | None = None  # e.g. to MQTT
        self.labels = LabelService(
            settings,
            store,
            model=self.manifest,
            on_event=self._event,
            monotonic=monotonic,
            cache_s=0.0,
        )
        self.labels.start()
        http = HttpSettings(port=0)
        app = create_app(
            slots=self.slots,
            store=store,
            metrics=AgentMetrics(process=False),
            settings=http,
            labels=self.labels,
        )
        self.server = HttpServer(app, http)
        self.server.start(timeout=10)
        self.client = httpx.Client(base_url=self.server.url, timeout=10)

    def _slot_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "model_swapped":  # as agent/runner.py does: a new serving period
            self.labels.begin_period(str(data["version"]))

    def _event(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append((kind, data))
        if self.forward is not None:
            self.forward(kind, data)

    def manifest(self) -> Manifest | None:
        predictor = self.slots.current()
        return None if predictor is None else predictor.manifest

    def install(self, bundle: Path) -> None:
        self.slots.install(bundle)

    def predict(self, body: dict[str, Any]) -> dict[str, Any]:
        r = self.client.post("/api/predict", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    def latest(self) -> dict[str, Any]:
        r = self.client.get("/api/predict/latest")
        assert r.status_code == 200, r.text
        return r.json()

    def label(self, body: Any) -> httpx.Response:
        return self.client.post("/api/labels", json=body)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.client.close()
        self.server.stop()
        self.labels.close()
        self.store.close()


MakeAgent = Callable[..., Agent]


@pytest.fixture
def monotonic() -> FakeClock:
    """The label service's monotonic clock (rate limit, event throttle)."""
    return FakeClock(1000.0)


@pytest.fixture
def make_agent(tmp_path: Path, bundles: Bundles, monotonic: FakeClock) -> Iterator[MakeAgent]:
    made: list[Agent] = []

    def make(
        model: tuple[str, ...] | None = ("mlp", "classify"),
        *,
        store: str = "sqlite",
        max_rows: int | None = None,
        **settings: Any,
    ) -> Agent:
        root = tmp_path / f"agent-{len(made)}"
        backing: Store
        if store == "sqlite":
            options = StoreSettings(path=root / "store.db", max_rows=max_rows)
            backing = SqliteStore(options)
            settings.setdefault("path", root / "predictions.db")
        else:
            backing = MemoryStore(StoreSettings(path=Path(":memory:"), max_rows=max_rows))
        agent = Agent(root, backing, LabelSettings(**settings), monotonic)
        made.append(agent)
        if model is not None:
            agent.install(bundles(*model))
        return agent

    yield make
    for agent in made:
        agent.close()


def room_rows(n: int, t0: float = T0, step: float = 10.0) -> list[Sample]:
    """``n`` readings of the room sensor, ``step`` seconds apart, no labels."""
    return [
        Sample(ts=t0 + i * step, values=dict(zip(ROOM, [X[0] + 0.01 * i, *X[1:]], strict=True)))
        for i in range(n)
    ]
