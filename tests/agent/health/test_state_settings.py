"""Persistent counters and the [health] settings table."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.health.settings import HealthSettings
from agent.health.state import SEQ_BLOCK, ReporterState


def test_session_and_seq_persist_and_only_grow(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = ReporterState(path)
    assert state.session == 0
    state.commit_session(1)
    seqs = [state.next_seq() for _ in range(3)]
    assert seqs == [1, 2, 3]
    again = ReporterState(path)  # e.g. after kill -9
    assert again.session == 1
    assert again.next_seq() > 3
    assert again.next_seq() <= SEQ_BLOCK + 2


def test_corrupt_state_file_starts_from_zero(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    state = ReporterState(path)
    assert (state.session, state.next_seq()) == (0, 1)


def test_unwritable_state_keeps_counting_in_memory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    state = ReporterState(tmp_path / "file" / "state.json")
    state.commit_session(4)
    assert (state.session, state.next_seq(), state.next_seq()) == (4, 1, 2)


def test_health_settings_defaults(tmp_path: Path) -> None:
    s = HealthSettings.from_mapping({}, state_dir=tmp_path)
    assert s.outbox_path == tmp_path / "health-outbox.db"
    assert s.state_path == tmp_path / "health-state.json"
    assert (s.outbox_max, s.ha_discovery, s.cpu_step_pct, s.temp_step_c, s.mem_step_pct) == (
        1000,
        False,
        20.0,
        5.0,
        10.0,
    )


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"outbox_max": 0}, "health.outbox_max"),
        ({"ha_discovery": "yes"}, "health.ha_discovery"),
        ({"alert_temp_c": 500}, "health.alert_temp_c"),
        ({"outbox_maxx": 5}, "health.outbox_maxx"),
        ({"reconnect_min_s": 10, "reconnect_max_s": 5}, "health.reconnect_max_s"),
    ],
)
def test_health_settings_name_the_wrong_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        HealthSettings.from_mapping(table)
    assert info.value.key == key
