"""Acks in the registry, through the ingest's own path (JSON -> decode_payload -> Message ->
record_many): stored per answer, a redelivery once, read per device and seq, pruned late."""

from __future__ import annotations

import time
from pathlib import Path

from agent.health.schema import decode_payload
from coordinator.health.registry import ACK_RETENTION_S, Message, Registry
from tests.fakes import FakeClock

from .conftest import ack


def message(device_id: str, payload: str, at: float) -> Message:
    return Message(device_id, "barn", decode_payload("ack", payload), at)


def test_acks_are_stored_once_each_and_read_by_seq(tmp_path: Path) -> None:
    clock = FakeClock()
    registry = Registry(tmp_path / "fleet.sqlite", clock=clock)
    try:
        restarting = ack(7, "restarting")
        applied = ack(7, "applied", config_version="0011223344556677", live=False)
        rejected = ack(8, "rejected", errors=("a.b: expected an integer. Received: b='x'",))
        registry.record_many(
            [
                message("pi-1", restarting, clock.now),
                message("pi-1", applied, clock.now),
                message("pi-1", applied, clock.now + 1),  # QoS 1 redelivered it
                message("pi-1", rejected, clock.now),
                message("pi-2", ack(7, "refused", errors=("expired",)), clock.now),
            ]
        )
        acks = registry.acks("pi-1")
        assert [(a.seq, a.status) for a in acks] == [
            (7, "restarting"),
            (7, "applied"),
            (8, "rejected"),
        ]
        assert acks[1].config_version == "0011223344556677" and acks[1].live is False
        assert acks[2].errors == ("a.b: expected an integer. Received: b='x'",)
        assert [a.status for a in registry.acks("pi-1", [8])] == ["rejected"]
        assert [a.status for a in registry.acks("pi-2")] == ["refused"]
        device = registry.device("pi-1")
        assert device is not None and device.fleet == "barn"  # an answer is hearing from it

        clock.advance(ACK_RETENTION_S - 10)
        registry.prune()
        assert len(registry.acks("pi-1")) == 3  # kept long after health history is gone
        clock.advance(20)
        registry.prune()
        assert registry.acks("pi-1") == []
    finally:
        registry.close()


def test_show_takes_the_config_version_of_a_newer_birth(tmp_path: Path) -> None:
    """After a restart the agent connects with the new version in its birth; an older ack's
    version is then not the latest the coordinator knows (``ack`` stamps answers now)."""
    import dataclasses

    from coordinator.remote.view import device_config, render_show
    from tests.coordinator.health.helpers import birth

    clock = FakeClock()
    registry = Registry(tmp_path / "fleet.sqlite", clock=clock)
    try:
        old = ack(7, "restarting", config_version="1111111111111111")
        registry.record_many([message("pi-1", old, clock.now)])
        acked = device_config("pi-1", registry.device("pi-1"), [], registry.acks("pi-1"))
        assert (acked.config_version, acked.config_version_source) == ("1111111111111111", "ack")

        born = dataclasses.replace(
            birth("pi-1", ts=time.time() + 60), config_version="2222222222222222"
        )
        registry.record("pi-1", "barn", born)
        cfg = device_config("pi-1", registry.device("pi-1"), [], registry.acks("pi-1"))
        assert (cfg.config_version, cfg.config_version_source) == ("2222222222222222", "birth")
        assert "config_version 2222222222222222 (reported" in render_show(cfg)
        assert "in its birth)" in render_show(cfg)
    finally:
        registry.close()
