"""The trainer's status document: its type, its errors, and writers that never lose a change."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

from agent.federation import status
from agent.federation.status import StatusError, TrainerStatus

FULL = TrainerStatus(
    state="training",
    run_id="42",
    round=3,
    last_duration_s=1.5,
    peak_rss_mb=310.2,
    last_outcome="over_time",
    last_reason="round ran 700 s > max_seconds 600",
    failures_in_row=2,
    pid=1234,
    request_started=1_700_000_000.5,
    updated=1_700_000_001.0,
)


def _doc(**changes: Any) -> bytes:
    return json.dumps({**FULL.to_dict(), **changes}).encode()


def test_round_trip() -> None:
    assert TrainerStatus.decode(FULL.encode()) == FULL
    assert TrainerStatus.decode(TrainerStatus().encode()) == TrainerStatus()
    assert FULL.over_budget and not TrainerStatus().over_budget


def test_an_unknown_version_is_named() -> None:
    with pytest.raises(StatusError, match=r"expected version=1\. Received: version=2"):
        TrainerStatus.decode(_doc(version=2))


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(TrainerStatus)])
def test_each_missing_field_is_named(name: str) -> None:
    doc = FULL.to_dict()
    del doc[name]
    expected = "version" if name == "version" else repr(name)
    with pytest.raises(StatusError, match=expected):
        TrainerStatus.decode(json.dumps(doc))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("state", "sleeping"),
        ("state", None),
        ("run_id", 42),
        ("round", -1),
        ("round", 1.5),
        ("round", True),
        ("last_duration_s", "1s"),
        ("peak_rss_mb", -3),
        ("last_outcome", "fine"),
        ("last_reason", ["x"]),
        ("failures_in_row", None),
        ("pid", "1234"),
        ("request_started", -1.0),
        ("updated", {}),
    ],
)
def test_each_wrong_field_is_named_with_its_value(name: str, value: Any) -> None:
    with pytest.raises(StatusError, match=rf"expected {name} to be .*Received: {name}="):
        TrainerStatus.decode(_doc(**{name: value}))


def test_unknown_fields_and_non_objects_are_refused() -> None:
    with pytest.raises(StatusError, match=r"Received: colour='red'"):
        TrainerStatus.decode(_doc(colour="red"))
    with pytest.raises(StatusError, match="expected a JSON object"):
        TrainerStatus.decode(b"[1, 2]")
    with pytest.raises(StatusError, match="expected a JSON object"):
        TrainerStatus.decode(b'{"state": "idle"')


def test_read_falls_back_to_the_defaults(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = status.path_for(tmp_path)
    assert status.read(path) == TrainerStatus()  # no file yet
    path.parent.mkdir(parents=True)
    path.write_bytes(_doc(state="sleeping"))
    assert status.read(path) == TrainerStatus()
    assert "expected state to be one of" in caplog.text


def test_update_counts_failures_in_a_row_and_refuses_a_bad_change(tmp_path: Path) -> None:
    path = status.path_for(tmp_path)
    status.update(path, last_outcome="error")
    assert status.update(path, last_outcome="over_memory").failures_in_row == 2
    assert status.update(path, last_outcome="ok").failures_in_row == 0
    before = path.read_bytes()
    with pytest.raises(StatusError, match="Received: state='asleep'"):
        status.update(path, state="asleep")
    with pytest.raises(StatusError, match="colour"):
        status.update(path, colour="red")
    assert path.read_bytes() == before  # nothing written


def _fail_repeatedly(path: str, times: int) -> None:
    for _ in range(times):
        status.update(Path(path), last_outcome="error")


def test_concurrent_writers_lose_no_change(tmp_path: Path) -> None:
    """Four processes each count 50 failures: a read-modify-write without the lock loses some."""
    path = status.path_for(tmp_path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_fail_repeatedly, args=(str(path), 50)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    assert status.read(path).failures_in_row == 200
    assert not list(path.parent.glob(".*.tmp"))  # no leftovers of the atomic replace


def test_a_held_lock_is_an_error_not_a_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer frozen inside the lock (SIGSTOP) must not hang the others forever."""
    monkeypatch.setattr(status, "LOCK_TIMEOUT_S", 0.2)
    path = status.path_for(tmp_path)
    status.update(path, state="training")
    fd = os.open(path.with_name(f"{path.name}.lock"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(StatusError, match=r"held for more than 0\.2 s"):
            status.update(path, state="idle")
    finally:
        os.close(fd)
    assert status.update(path, state="idle").state == "idle"


class _Clock:
    """A fake monotonic clock; ``pause`` advances it and may run what happens meanwhile."""

    def __init__(self, meanwhile: Any = None) -> None:
        self.now = 0.0
        self.pauses = 0
        self.meanwhile = meanwhile

    def __call__(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.now += seconds
        self.pauses += 1
        if self.meanwhile is not None:
            self.meanwhile(self.pauses)


def test_a_stop_recorded_after_the_call_is_returned_as_soon_as_it_is_there(tmp_path: Path) -> None:
    path = status.path_for(tmp_path)
    status.update(path, state="training", pid=42, run_id="r", round=1)
    since = status.read(path).updated or 0.0

    def supervisor_records(pauses: int) -> None:  # the kill is recorded on the third poll
        if pauses == 3:
            status.update(path, state="stopped", pid=None, last_outcome="over_time")

    clock = _Clock(supervisor_records)
    after = status.stop_recorded(path, since, 15.0, clock=clock, pause=clock.pause)
    assert after.over_budget and after.last_outcome == "over_time"
    assert clock.pauses == 3


def test_without_a_recorded_stop_the_wait_ends_at_its_timeout(tmp_path: Path) -> None:
    path = status.path_for(tmp_path)
    status.update(path, state="stopped", last_outcome="over_time")  # an older stop
    since = (status.read(path).updated or 0.0) + 1.0  # the call was sent after it
    clock = _Clock()
    after = status.stop_recorded(path, since, 15.0, clock=clock, pause=clock.pause)
    assert 15.0 <= clock.now < 15.2  # float steps of 0.1: 150 or 151 polls
    assert after.last_outcome == "over_time"  # the caller sees the old outcome as it is
