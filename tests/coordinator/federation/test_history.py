"""history.json: the writer's document read back through RunHistory/RoundSummary, defensively."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from coordinator.federation.history import History, HistoryError, RoundSummary, RunHistory
from coordinator.service import progress_line

ROUND: dict[str, Any] = {
    "round": 1,
    "selected": [3, 5],
    "skipped": {"7": "too hot"},
    "train": {"loss": 0.5, "metric": 0.9},
    "evaluate": {"loss": 0.6, "metric": 0.8},
    "central": None,
    "failures": 1,
    "duration_s": 12.25,
    "phases": {"train": {"replies": []}},  # readers keep only what they show
}


def written(tmp_path: Path, *rounds: dict[str, Any]) -> Path:
    history = History(tmp_path / "r7" / "history.json", "r7", {"strategy": "fedprox"})
    for record in rounds:
        history.add_round(record)
    return history.path


def test_what_the_writer_writes_the_readers_read(tmp_path: Path) -> None:
    run = RunHistory.read(written(tmp_path, ROUND, {**ROUND, "round": 2, "central": {"metric": 1}}))
    assert (run.run_id, run.status, run.strategy, run.dropped) == ("r7", "running", "fedprox", 0)
    first, second = run.rounds
    assert first == RoundSummary(
        round=1,
        train={"loss": 0.5, "metric": 0.9},
        evaluate={"loss": 0.6, "metric": 0.8},
        central={},
        selected=("3", "5"),
        skipped={"7": "too hot"},
        failures=1,
        duration_s=12.25,
    )
    assert second.central == {"metric": 1.0}
    assert progress_line(first, 3) == (
        "round 1/3: train loss 0.500 metric 0.900 | device eval 0.800 | central - | "
        "2 devices, 1 skipped, 1 failures | 12.2 s"
    )


def test_malformed_rounds_are_dropped_and_counted_and_rounds_sorted(tmp_path: Path) -> None:
    path = written(tmp_path, {**ROUND, "round": 3}, {"round": "two"}, ["nonsense"], ROUND)
    run = RunHistory.read(path)
    assert [r.round for r in run.rounds] == [1, 3] and run.dropped == 2


def test_values_that_are_not_finite_numbers_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "r8" / "history.json"
    path.parent.mkdir()
    bad = {**ROUND, "train": {"loss": "NaN", "metric": True, "n": 3}, "failures": "many"}
    path.write_text(json.dumps({"rounds": [bad], "started": "yesterday"}))
    run = RunHistory.read(path)
    assert run.rounds[0].train == {"n": 3.0} and run.rounds[0].failures == 0
    assert run.run_id == "r8" and run.started == 0.0 and run.strategy == "?"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "does not exist"),
        ('{"rounds": [', "is unreadable"),
        ('{"run_id": "x"}', "has no 'rounds' list"),
        ("[]", "has no 'rounds' list"),
    ],
)
def test_an_unreadable_file_is_an_error_naming_why(
    tmp_path: Path, content: str | None, words: str
) -> None:
    path = tmp_path / "r9" / "history.json"
    path.parent.mkdir()
    if content is not None:
        path.write_text(content)
    with pytest.raises(HistoryError, match=words):
        RunHistory.read(path)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ([1], "expected an object. Received: [1]"),
        ({"round": True}, "expected round to be an integer. Received: round=True"),
        ({}, "expected round to be an integer. Received: round=None"),
    ],
)
def test_a_round_without_its_number_is_named(raw: Any, words: str) -> None:
    with pytest.raises(HistoryError) as info:
        RoundSummary.decode(raw)
    assert words in str(info.value)
