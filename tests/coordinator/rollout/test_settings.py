"""``[rollout]`` in coordinator.toml: defaults, every wrong key named, where the store lives."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator import config
from coordinator.errors import ConfigError, InvalidConfig
from coordinator.rollout.settings import (
    RolloutSettings,
    Thresholds,
    parse_duration,
    parse_percent,
)

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "coordinator.example.toml"


def test_the_documented_example_sets_the_defaults() -> None:
    assert config.load(EXAMPLE).rollout == RolloutSettings()


def test_a_rollout_table_is_read_into_frozen_settings(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        f'state_dir = "{tmp_path}"\n[rollout]\nafter_run = "canary"\ncanary_pct = 10\n'
        "soak_s = 900\nmin_labels = 0\nmax_drift_psi = false\nmin_predictions = 50\n"
    )
    cfg = config.load(path)
    assert cfg.rollout == RolloutSettings(
        after_run="canary",
        canary_pct=10.0,
        soak_s=900.0,
        min_labels=0,
        thresholds=Thresholds(max_drift_psi=None, min_predictions=50),
    )
    assert cfg.rollout_path == tmp_path / "runs" / "rollout.sqlite"  # beside fleet.sqlite
    path.write_text("[registry]\npath = '/var/lib/orchard/fleet.sqlite'\n")
    assert config.load(path).rollout_path == Path("/var/lib/orchard/rollout.sqlite")
    path.write_text("[rollout]\npath = '/srv/rollout.db'\n")
    assert config.load(path).rollout_path == Path("/srv/rollout.db")


def test_every_wrong_rollout_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig) as info:
        RolloutSettings.from_mapping(
            {
                "canary_pct": 0,
                "deadline_factor": 0.5,
                "max_accuracy_drop": 2,
                "min_labels": -3,
                "tick_s": "5s",
                "soak": 600,
            }
        )
    text = str(info.value)
    for needle in (
        "rollout.canary_pct: expected a percentage in (0, 100]. Received: canary_pct=0",
        "rollout.deadline_factor: expected a finite number >= 1.0. Received: deadline_factor=0.5",
        "rollout.max_accuracy_drop: expected a finite number in [0.0, 1.0] or false (off)",
        "rollout.min_labels: expected an integer >= 0. Received: min_labels=-3",
        "rollout.tick_s: expected a finite number in [0.1, 3600.0]. Received: tick_s='5s'",
        "rollout.soak: expected a known option",
    ):
        assert needle in text, text


def test_durations_and_percentages_as_typed_on_the_command_line() -> None:
    assert [parse_duration(t) for t in ("90s", "10m", "1h", "1h30m", "600", "2.5m")] == [
        90.0, 600.0, 3600.0, 5400.0, 600.0, 150.0,
    ]  # fmt: skip
    assert parse_percent("20%") == 20.0 and parse_percent("100") == 100.0
    for bad in ("", "ten", "10x", "1h30", "-3m"):
        with pytest.raises(ConfigError, match="soak: expected a duration"):
            parse_duration(bad)
    for bad in ("0%", "101", "a%"):
        with pytest.raises(ConfigError, match="canary: expected a percentage in"):
            parse_percent(bad)
