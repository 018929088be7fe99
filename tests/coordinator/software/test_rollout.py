"""Batches and the abort threshold: real signed commands in a real command store; the boards'
answers (normally read from the registry the ingest fills) are given per device."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.remote.command import Command, SoftwareRef
from coordinator.errors import ConfigError
from coordinator.remote.sender import ConfigSender, Target
from coordinator.remote.store import CommandStore
from coordinator.software.rollout import Answer, SoftwareRollout, plan
from orchard_common.signing import Signer
from provisioning.ca import FleetCA

REF = SoftwareRef("0.2.0", "http://c:8781/software/0.2.0/manifest.json", "a" * 64)


def _targets(n: int) -> list[Target]:
    return [Target(f"pi-{i}") for i in range(1, n + 1)]


def test_plan_is_canary_then_batches() -> None:
    ids = lambda batches: [[t.device_id for t in b] for b in batches]  # noqa: E731
    assert ids(plan(_targets(9), canary=1, batch="25%")) == [
        ["pi-1"],
        ["pi-2", "pi-3"],
        ["pi-4", "pi-5"],
        ["pi-6", "pi-7"],
        ["pi-8", "pi-9"],
    ]
    assert ids(plan(_targets(5), canary=0, batch="3")) == [
        ["pi-1", "pi-2", "pi-3"],
        ["pi-4", "pi-5"],
    ]
    assert ids(plan(_targets(2), canary=5, batch="100%")) == [["pi-1", "pi-2"]]
    for bad in ("0", "0%", "120%", "a quarter", "-1"):
        with pytest.raises(ConfigError, match="expected a count such as 5"):
            plan(_targets(3), canary=1, batch=bad)


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    ca = FleetCA.init(tmp_path_factory.mktemp("ca") / "ca")
    return Signer(*ca.signer_cert("coordinator"))


def _rollout(
    tmp_path: Path, signer: Signer, outcomes: dict[str, str], *, abort_after: int
) -> tuple[SoftwareRollout, list[Command], list[str]]:
    store = CommandStore(tmp_path / "config.sqlite")
    sender = ConfigSender(store, signer, "http://c:8781/signer.pem", answered=lambda d, s: False)
    published: list[Command] = []
    said: list[str] = []

    def publish(topic: str, payload: str) -> None:
        command = Command.from_json(payload)  # what a board decodes
        assert topic == f"orchard/v1/{command.device_id}/command"
        published.append(command)

    def answer(device_id: str, seq: int) -> Answer | None:
        status = outcomes.get(device_id, "applied")
        if status == "silent":
            return Answer("updating")
        return Answer(status, None if status == "applied" else "the new agent is not healthy")

    rollout = SoftwareRollout(
        sender,
        publish,
        answer,
        ref=REF,
        expires_s=3600,
        batch_timeout_s=0.5,
        abort_after=abort_after,
        say=said.append,
        poll_s=0.05,
    )
    return rollout, published, said


def test_batches_go_out_one_after_another_until_the_abort_threshold(
    tmp_path: Path, signer: Signer
) -> None:
    outcomes = {"pi-2": "rolled_back", "pi-5": "rejected"}
    rollout, published, said = _rollout(tmp_path, signer, outcomes, abort_after=2)
    report = rollout.run(plan(_targets(9), canary=1, batch="25%"))

    sent = [c.device_id for c in published]
    assert sent == ["pi-1", "pi-2", "pi-3", "pi-4", "pi-5"]  # batches 4 and 5 never sent
    assert all(c.kind == "update" and c.update == REF and c.signature for c in published)
    status = {o.device_id: o.status for o in report.outcomes}
    assert status == {
        "pi-1": "applied", "pi-2": "rolled_back", "pi-3": "applied", "pi-4": "applied",
        "pi-5": "rejected", "pi-6": "skipped", "pi-7": "skipped", "pi-8": "skipped",
        "pi-9": "skipped",
    }  # fmt: skip
    assert report.aborted is not None and "--abort-after 2" in report.aborted
    assert not report.ok and report.failures == 2
    assert any("not healthy" in line for line in said)


def test_a_silent_board_times_out_and_counts_as_a_failure(tmp_path: Path, signer: Signer) -> None:
    rollout, published, _ = _rollout(tmp_path, signer, {"pi-1": "silent"}, abort_after=1)
    report = rollout.run(plan(_targets(3), canary=1, batch="1"))
    assert [c.device_id for c in published] == ["pi-1"]
    first = report.outcomes[0]
    assert first.status == "timeout" and "last: updating" in (first.reason or "")
    assert report.aborted is not None


def test_a_good_release_reaches_every_board(tmp_path: Path, signer: Signer) -> None:
    rollout, published, _ = _rollout(tmp_path, signer, {}, abort_after=1)
    report = rollout.run(plan(_targets(4), canary=1, batch="50%"))
    assert report.ok and [o.status for o in report.outcomes] == ["applied"] * 4
    assert sorted(c.device_id for c in published) == ["pi-1", "pi-2", "pi-3", "pi-4"]
