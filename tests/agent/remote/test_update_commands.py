"""``update`` commands in the agent's process: real signatures, a release published and served
by the coordinator's real artifact server, staged by the real Stager. The root updater is
another process; its outcome file (agent/software/files.py) is written here as it writes it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from agent import config
from agent.delivery.fetch import HttpFetcher
from agent.health.schema import Ack
from agent.remote.auth import CommandAuth
from agent.remote.command import Command, SoftwareRef, signed_bytes
from agent.remote.live import LiveParts
from agent.remote.service import RemoteConfig
from agent.remote.state import RemoteFiles
from agent.software.files import UpdateFiles, UpdateResult
from agent.software.stage import Stager
from agent.software.updates import SoftwareUpdates
from coordinator.software.release import Release
from orchard_common.signing import sign_artifact
from tests.agent.remote.helpers import Fleet, fleet
from tests.agent.software.helpers import served_release
from tests.waiting import wait_until

DEVICE = "pi-1"


@pytest.fixture(scope="module")
def signers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with fleet(tmp_path_factory.mktemp("fleet")) as f:
        yield f


@pytest.fixture
def release(tmp_path: Path, signers: Fleet) -> Iterator[Release]:
    with served_release(tmp_path, signers.signer, "0.2.0") as (published, _state):
        yield published


@dataclass
class Agent:
    remote: RemoteConfig
    files: UpdateFiles
    acks: list[Ack]
    events: list[tuple[str, dict[str, Any]]]

    def send(self, command: Command) -> Ack | None:
        before = len(self.acks)
        self.remote.handle(command.to_json().encode())
        return self.acks[-1] if len(self.acks) > before else None


def _agent(tmp_path: Path, signers: Fleet, *, updates: bool = True) -> Agent:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "agent.toml"
    path.write_text(
        f'device_id = "{DEVICE}"\nstate_dir = "{tmp_path / "state"}"\n'
        '[sensors.env]\ndriver = "synthetic"\ninterval_s = 1.0\n'
        f'[models]\ntrust_ca = "{signers.ca_pem}"\n'
    )
    cfg = config.load(path)
    files = RemoteFiles(cfg.state_dir)
    fetcher = HttpFetcher(timeout_s=10)
    update_files = UpdateFiles(cfg.state_dir)
    stager = Stager(
        update_files,
        fetcher,
        trust_ca=cfg.models.trust_ca,
        running_version="0.1.0",
        local_wheels=None,
        install_base=tmp_path / "opt",
    )
    acks: list[Ack] = []
    events: list[tuple[str, dict[str, Any]]] = []
    remote = RemoteConfig(
        cfg,
        files=files,
        auth=CommandAuth(cfg.models.trust_ca, files.signers, fetcher),
        live=LiveParts(),
        send=lambda ack: acks.append(Ack.from_json(ack.to_json())),
        restart=lambda reason: None,
        health=lambda need_broker: None,
        on_event=lambda kind, data: events.append((kind, data)),
        updates=SoftwareUpdates(stager, update_files) if updates else None,
    )
    return Agent(remote, update_files, acks, events)


def _update(signers: Fleet, seq: int, ref: SoftwareRef, *, signed: bool = True) -> Command:
    now = time.time()
    command = Command(
        device_id=DEVICE,
        seq=seq,
        issued=now,
        expires=now + 600,
        kind="update",
        update=ref,
        signer_url=f"{signers.url}/signer.pem",
    )
    if not signed:
        return command
    out: Command = sign_artifact(command, signers.signer, signed_bytes=signed_bytes)
    return Command.from_json(out.to_json())  # as it arrives


def test_an_update_is_staged_acked_and_its_outcome_reported(
    tmp_path: Path, signers: Fleet, release: Release
) -> None:
    agent = _agent(tmp_path, signers)
    ack = agent.send(_update(signers, 5, release.ref))
    assert ack is not None and (ack.seq, ack.status, ack.agent_version) == (5, "updating", "0.1.0")
    request = agent.files.read_request()
    assert request is not None and (request.seq, request.version) == (5, "0.2.0")
    assert (Path(request.staged) / "orchard_fl-0.2.0-py3-none-any.whl").is_file()

    # The root updater's outcome, as it writes it; the running worker acks it once.
    agent.remote.start()
    try:
        agent.files.write_result(
            UpdateResult(5, "0.2.0", "applied", "0.2.0", None, time.time(), {"install_s": 3.5})
        )
        agent.files.request.unlink()
        wait_until(lambda: agent.acks[-1].status == "applied", 10, "the applied ack")
    finally:
        agent.remote.stop()
    ack = agent.acks[-1]
    assert (ack.seq, ack.agent_version, ack.errors) == (5, "0.2.0", ())
    assert not agent.files.result.exists()
    assert not Path(request.staged).exists()  # the staging is cleaned
    assert ("software_update", {"seq": 5, "version": "0.2.0", "outcome": "applied",
                                "running": "0.2.0", "install_s": 3.5}) in agent.events  # fmt: skip


def test_a_rollback_found_at_start_is_acked_with_its_reason(tmp_path: Path, signers: Fleet) -> None:
    agent = _agent(tmp_path, signers)
    reason = "the power went out before the new version was confirmed healthy"
    agent.files.write_result(UpdateResult(9, "0.2.0", "rolled_back", "0.1.0", reason, 1.0))
    agent.remote.start()
    try:
        wait_until(lambda: agent.acks, 10, "the ack at start")
    finally:
        agent.remote.stop()
    assert (agent.acks[0].seq, agent.acks[0].status, agent.acks[0].errors) == (
        9,
        "rolled_back",
        (reason,),
    )


def test_the_running_version_is_applied_at_once_and_bad_updates_are_answered(
    tmp_path: Path, signers: Fleet, release: Release
) -> None:
    agent = _agent(tmp_path, signers)
    ack = agent.send(_update(signers, 1, replace(release.ref, version="0.1.0")))
    assert ack is not None and (ack.status, ack.agent_version) == ("applied", "0.1.0")
    assert not agent.files.request.exists()

    ack = agent.send(_update(signers, 2, replace(release.ref, manifest_sha256="0" * 64)))
    assert ack is not None and ack.status == "rejected" and "expected sha256" in ack.errors[0]

    ack = agent.send(_update(signers, 3, release.ref, signed=False))
    assert ack is not None and ack.status == "refused"
    ack = agent.send(_update(signers, 2, release.ref))  # seq 2 was acted on: a replay
    assert ack is not None and ack.status == "refused" and "replayed" in ack.errors[0]
    assert not agent.files.request.exists()
    ack = agent.send(_update(signers, 3, release.ref))
    assert ack is not None and ack.status == "updating"

    plain = _agent(tmp_path / "plain", signers, updates=False)
    ack = plain.send(_update(signers, 4, release.ref))
    assert ack is not None and ack.status == "refused" and "kind" in ack.errors[0]


def test_an_update_sent_while_another_installs_waits_for_it(
    tmp_path: Path, signers: Fleet, release: Release
) -> None:
    """Staging it at once would remove the request the root updater works on, and the first
    update would never be answered (a second `fleet update` while the first still installs)."""
    agent = _agent(tmp_path, signers)
    ack = agent.send(_update(signers, 5, release.ref))
    assert ack is not None and ack.status == "updating"
    assert agent.send(_update(signers, 6, release.ref)) is None  # no answer yet: it waits
    request = agent.files.read_request()
    assert request is not None and request.seq == 5  # the updater's request is untouched

    agent.remote.start()
    try:
        agent.files.write_result(UpdateResult(5, "0.2.0", "applied", "0.2.0", None, time.time()))
        agent.files.request.unlink()  # as the updater leaves it
        wait_until(lambda: [a.seq for a in agent.acks][-2:] == [5, 6], 10, "both answers")
    finally:
        agent.remote.stop()
    assert [(a.seq, a.status) for a in agent.acks] == [
        (5, "updating"),
        (5, "applied"),
        (6, "updating"),  # this test's stager still says 0.1.0 runs: staged again
    ]


def test_a_disk_error_while_staging_is_answered(
    tmp_path: Path, signers: Fleet, release: Release, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Stager, "stage", full)
    agent = _agent(tmp_path, signers)
    ack = agent.send(_update(signers, 5, release.ref))
    assert ack is not None and ack.status == "rejected" and "No space" in ack.errors[0]
