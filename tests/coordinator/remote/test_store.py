"""The command store: seq only grows per device, across restarts and a deleted file; commands
are stored signed and read back as the board would decode them."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.remote.command import Command, signed_bytes
from coordinator.remote.errors import RemoteError
from coordinator.remote.sender import build
from coordinator.remote.store import CommandStore
from orchard_common.signing import Signer, verify
from tests.fakes import FakeClock

from .conftest import Signing

URL = "http://127.0.0.1:8781/signer.pem"


def issue(store: CommandStore, signer: Signer, device_id: str, key: str = "a.b") -> Command:
    def make(seq: int, now: float) -> Command:
        return build(device_id, seq, now, {key: "1"}, expires_s=60, signer=signer, signer_url=URL)

    return store.issue(device_id, None, f"orchard/v1/{device_id}/command", make).command


def test_seq_grows_per_device_and_survives_a_restart(tmp_path: Path, signing: Signing) -> None:
    signer = Signer(signing.cert, signing.key)
    clock = FakeClock(start=1_765_000_000.0)
    path = tmp_path / "config.sqlite"
    store = CommandStore(path, clock=clock)
    first = issue(store, signer, "pi-1")
    assert first.seq == 1_765_000_000_000  # now in milliseconds
    second = issue(store, signer, "pi-1")  # the same millisecond: still one more
    assert second.seq == first.seq + 1
    assert issue(store, signer, "pi-2").seq == first.seq  # per device
    store.close()

    clock.now -= 3600  # a clock set back an hour, and a fresh process
    store = CommandStore(path, clock=clock)
    third = issue(store, signer, "pi-1")
    assert third.seq == second.seq + 1
    assert [c.seq for c in store.commands("pi-1")] == [first.seq, second.seq, third.seq]
    stored = store.command("pi-1", third.seq)
    assert stored is not None and stored.published is None and stored.command == third
    assert store.last("pi-1") == stored
    store.mark_published("pi-1", third.seq)
    assert store.command("pi-1", third.seq).published == clock.now  # type: ignore[union-attr]
    assert store.devices() == ["pi-1", "pi-2"]
    store.close()

    # A store deleted and created again: the time in ms still outranks what boards acted on.
    path.unlink()
    clock.now += 7200
    with CommandStore(path, clock=clock) as fresh:
        assert issue(fresh, signer, "pi-1").seq > third.seq


def test_stored_commands_are_signed_and_verify_against_the_ca(
    tmp_path: Path, signing: Signing
) -> None:
    signer = Signer(signing.cert, signing.key)
    with CommandStore(tmp_path / "config.sqlite") as store:
        command = issue(store, signer, "pi-1", "sampling.interval_s")
        read = store.commands("pi-1")[0].command
    assert read == command and read.signer == signer.fingerprint
    assert read.signer_url == URL and read.expires == read.issued + 60
    assert read.signature is not None
    verify(
        signed_bytes(read),
        read.signature,
        signing.cert.read_bytes(),
        signing.ca_pem,
        expected_fingerprint=signer.fingerprint,
    )


def test_a_command_for_another_seq_is_not_stored(tmp_path: Path, signing: Signing) -> None:
    signer = Signer(signing.cert, signing.key)
    with CommandStore(tmp_path / "config.sqlite") as store:
        with pytest.raises(RemoteError, match="expected a command for pi-1 seq"):
            store.issue(
                "pi-1",
                None,
                "t",
                lambda seq, now: build(
                    "pi-1", seq + 5, now, {"a.b": "1"}, expires_s=60, signer=signer, signer_url=URL
                ),
            )
        assert store.commands("pi-1") == []


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "config.sqlite"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=9")
    db.close()
    with pytest.raises(RemoteError, match="expected schema version <= 1"):
        CommandStore(path)
