"""Fixtures: reporters against the real brokers of tests/brokers.py, on a fake board tree."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import MqttSettings
from agent.health.reporter import HealthReporter
from agent.health.settings import HealthSettings
from tests.agent.health.helpers import fake_pi

MakeReporter = Callable[..., HealthReporter]


def mqtt_settings(port: int, **overrides: Any) -> MqttSettings:
    table: dict[str, Any] = {"host": "127.0.0.1", "port": port, "keepalive_s": 5}
    table.update(overrides)
    return MqttSettings.from_mapping(table)


def health_settings(state_dir: Path, root: Path, **overrides: Any) -> HealthSettings:
    values: dict[str, Any] = {
        "outbox_path": state_dir / "health-outbox.db",
        "facts_root": root,
        "sample_s": 3600.0,  # the worker ticks once at start; tests call tick() themselves
        "min_change_gap_s": 0.0,
        "reconnect_min_s": 1.0,
        "reconnect_max_s": 2.0,
    }
    values.update(overrides)
    return HealthSettings(**values)


@pytest.fixture
def board(tmp_path: Path) -> Path:
    return fake_pi(tmp_path / "board")


@pytest.fixture
def make_reporter(tmp_path: Path, board: Path) -> Iterator[MakeReporter]:
    made: list[HealthReporter] = []

    def make(
        port: int,
        *,
        mqtt: dict[str, Any] | None = None,
        state_dir: Path | None = None,
        device_id: str = "pi-1",
        **kwargs: Any,
    ) -> HealthReporter:
        health = kwargs.pop("health", {})
        reporter = HealthReporter(
            mqtt_settings(port, **(mqtt or {})),
            device_id,
            health=health_settings(state_dir or tmp_path / "state", board, **health),
            **kwargs,
        )
        made.append(reporter)
        return reporter

    yield make
    for reporter in made:
        reporter.stop(timeout=2.0)
