"""One suite for both outboxes (memory and SQLite): FIFO, ack, drop-oldest counted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.health.outbox import MemoryOutbox, Outbox, OutboxError, SqliteOutbox


@pytest.fixture(params=["memory", "sqlite"])
def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outbox]:
    box: Outbox = (
        MemoryOutbox(max_items=5)
        if request.param == "memory"
        else SqliteOutbox(tmp_path / "outbox.db", max_items=5)
    )
    yield box
    box.close()


def drain(box: Outbox) -> list[str]:
    out = []
    while (item := box.peek()) is not None:
        out.append(item.payload)
        box.ack(item.id)
    return out


def test_fifo_and_peek_keeps_until_ack(outbox: Outbox) -> None:
    assert outbox.peek() is None
    for i in range(3):
        assert outbox.put("t", f"m{i}") == 0
    first = outbox.peek()
    assert first is not None and first.payload == "m0"
    assert outbox.peek() == first  # still there until acked
    assert drain(outbox) == ["m0", "m1", "m2"]
    assert outbox.stats().queued == 0


def test_full_outbox_drops_oldest_and_counts(outbox: Outbox) -> None:
    dropped = [outbox.put("t", f"m{i}") for i in range(8)]
    assert dropped == [0, 0, 0, 0, 0, 1, 1, 1]
    stats = outbox.stats()
    assert (stats.queued, stats.dropped) == (5, 3)
    assert drain(outbox) == ["m3", "m4", "m5", "m6", "m7"]
    assert outbox.stats().dropped == 3  # cumulative, not reset by draining


def test_ack_of_a_dropped_item_is_harmless(outbox: Outbox) -> None:
    outbox.put("t", "old")
    old = outbox.peek()
    assert old is not None
    for i in range(5):
        outbox.put("t", f"m{i}")
    outbox.ack(old.id)  # it was dropped while "in flight"
    assert [*drain(outbox)] == ["m0", "m1", "m2", "m3", "m4"]


def test_topics_are_kept(outbox: Outbox) -> None:
    outbox.put("a/health", "1")
    outbox.put("a/event", "2")
    item = outbox.peek()
    assert item is not None and (item.topic, item.payload) == ("a/health", "1")


def test_sqlite_outbox_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = SqliteOutbox(path, max_items=2)
    for i in range(3):
        box.put("t", f"m{i}")
    box.close()
    again = SqliteOutbox(path, max_items=2)
    assert (again.stats().queued, again.stats().dropped) == (2, 1)
    assert drain(again) == ["m1", "m2"]
    again.close()


def test_unusable_path_raises_outbox_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutboxError, match="cannot open"):
        SqliteOutbox(tmp_path / "file" / "outbox.db")


def test_max_items_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_items"):
        MemoryOutbox(max_items=0)
