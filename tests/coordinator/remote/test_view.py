"""Commands joined with acks: each outcome, the effective applied patch, what is pending."""

from __future__ import annotations

from agent.remote.command import Command
from coordinator.health.registry import AckRecord
from coordinator.remote.store import SentCommand
from coordinator.remote.view import answer_line, device_config, history, render_show

NOW = 1_765_000_000.0


def sent(
    seq: int, patch: dict[str, str | None], *, published: bool = True, age: float = 60
) -> SentCommand:
    command = Command(
        device_id="pi-1",
        seq=seq,
        issued=NOW - age,
        expires=NOW - age + 3600,
        kind="config",
        patch=patch,
    )
    return SentCommand(command, None, "orchard/v1/pi-1/command", NOW - age if published else None)


def answer(seq: int, status: str, ts: float, version: str | None = None, *errors: str) -> AckRecord:
    return AckRecord("pi-1", seq, NOW - 100 + ts, NOW, status, version, False, errors)


def test_outcomes() -> None:
    commands = [
        sent(1, {"sampling.interval_s": "5"}, age=7200),  # applied after a restart
        sent(2, {"training.memory_mb": "9"}, age=7000),  # rejected
        sent(3, {"sampling.interval_s": None, "labels.mqtt_topic": '"x"'}, age=6000),  # applied
        sent(4, {"a.b": "1"}, age=5000),  # never answered, expired
        sent(5, {"a.c": "1"}, age=50),  # overtaken by 6 before the board read it
        sent(6, {"a.d": "1"}, age=40),  # pending
        sent(7, {"a.e": "1"}, age=30, published=False),  # the broker never took it
    ]
    old_unsent = [sent(8, {"a.f": "1"}, age=9000, published=False)]
    acks = [
        answer(1, "applied", 2, "v1"),
        answer(1, "restarting", 1),  # stored in another order than it happened
        answer(2, "rejected", 3, "v1", "training.memory_mb: expected >= 64"),
        answer(3, "applied", 4, "v3"),
        answer(9, "refused", 5, None, "expired"),  # a seq this store never issued
    ]
    views = history(commands, acks, now=NOW)
    assert [(v.seq, v.outcome) for v in views] == [
        (1, "applied"),
        (2, "rejected"),
        (3, "applied"),
        (4, "expired"),
        (5, "superseded"),
        (6, "pending"),
        (7, "not sent"),
        (9, "refused (unknown command)"),
    ]
    assert [a.status for a in views[0].acks] == ["restarting", "applied"]
    assert [v.outcome for v in history(old_unsent, [], now=NOW)] == ["not sent (expired)"]

    cfg = device_config("pi-1", None, commands, acks, now=NOW)
    assert cfg.applied == {"labels.mqtt_topic": '"x"', "sampling.interval_s": None}
    assert cfg.applied_seqs == (1, 3)
    assert cfg.config_version == "v3"  # the latest ack that carried one
    assert [v.seq for v in cfg.pending] == [6, 7]
    text = render_show(cfg)
    assert "pi-1 (not in registry): config_version v3" in text
    assert "  sampling.interval_s (removed)" in text
    assert '  labels.mqtt_topic = "x"' in text
    assert "  seq 6 pending, expires" in text and "a.d=1" in text
    assert "  seq 7 not sent" in text

    assert answer_line("pi-1", views[1]) == (
        "pi-1: rejected (the old config keeps running): training.memory_mb: expected >= 64"
    )
    assert answer_line("pi-1", views[0]).startswith("pi-1: applied (after a restart; config_")
    assert answer_line("pi-1", None) == "pi-1: no answer yet"


def test_an_applied_ack_for_an_unknown_command_is_shown_not_folded() -> None:
    cfg = device_config("pi-1", None, [], [answer(4, "applied", 1, "v9")], now=NOW)
    assert cfg.applied == {} and cfg.unknown_applied == (4,) and cfg.config_version == "v9"
    assert "seq 4, not in this command store" in render_show(cfg)
