"""The root updater on a board laid out in a temp dir: real venvs, real pip, real signatures;
systemd and the agent's health are the stand-ins of tests/agent/software/helpers.py."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.software.layout import Journal
from orchard_common.signing import Signer
from tests.agent.software.helpers import Board, running_version

pytestmark = pytest.mark.timeout(300)
MakeBoard = Callable[..., Board]


def _link(board: Board) -> str:
    return os.readlink(board.layout.link)


def test_update_moves_a_first_boot_install_behind_the_link_and_commits(
    make_board: MakeBoard, fleet: tuple[Path, Signer, Signer]
) -> None:
    board = make_board("0.1.0")
    assert not board.layout.link.is_symlink()  # as the first-boot installer left it
    board.stage(7, "0.2.0", fleet[1])

    result = board.updater().apply()

    assert result is not None and result.outcome == "applied", result
    assert (result.seq, result.running, result.reason) == (7, "0.2.0", None)
    assert _link(board) == "venv-b" and running_version(board.layout) == "0.2.0"
    # The old environment stays complete beside it, behind the old path, to switch back to.
    assert (board.layout.slot("venv-a") / "bin" / "orchard-agent").exists()
    journal = board.layout.read_journal()
    assert journal is not None and (journal.phase, journal.old, journal.new) == (
        "committed",
        "venv-a",
        "venv-b",
    )
    assert board.services.restarts == ["venv-b"]
    assert not board.files.request.exists()
    assert board.files.read_result() == result
    assert set(result.timings) >= {"verify_s", "install_s", "switch_to_healthy_s", "total_s"}

    # The next release goes into the other environment: venv-a, the one not running.
    board.stage(8, "0.3.0", fleet[1])
    result = board.updater().apply()
    assert result is not None and result.outcome == "applied"
    assert _link(board) == "venv-a" and running_version(board.layout) == "0.3.0"


def test_an_agent_that_is_not_healthy_is_switched_back(
    make_board: MakeBoard, fleet: tuple[Path, Signer, Signer]
) -> None:
    board = make_board("0.1.0")
    board.services.unhealthy["0.2.0"] = "/healthz says ready=False (within 5 s)"
    board.stage(3, "0.2.0", fleet[1])

    result = board.updater().apply()

    assert result is not None and result.outcome == "rolled_back"
    assert result.running == "0.1.0"
    assert "not healthy: /healthz says ready=False" in (result.reason or "")
    assert _link(board) == "venv-a" and running_version(board.layout) == "0.1.0"
    # Restarted on the new version, then on the old one again.
    assert board.services.restarts == ["venv-b", "venv-a"]
    journal = board.layout.read_journal()
    assert journal is not None and journal.phase == "rolled_back"


def test_a_model_failing_its_golden_inputs_under_the_new_version_is_switched_back(
    make_board: MakeBoard, fleet: tuple[Path, Signer, Signer]
) -> None:
    board = make_board("0.1.0")
    board.golden_fails["0.2.0"] = "golden sample 2: expected class 1. Received: 0"
    board.stage(3, "0.2.0", fleet[1])
    result = board.updater().apply()
    assert result is not None and result.outcome == "rolled_back"
    assert "golden inputs" in (result.reason or "") and "sample 2" in (result.reason or "")
    assert running_version(board.layout) == "0.1.0"


def test_an_agent_that_does_not_start_is_switched_back(
    make_board: MakeBoard, fleet: tuple[Path, Signer, Signer]
) -> None:
    board = make_board("0.1.0")
    board.services.fail_restart = True
    board.stage(3, "0.2.0", fleet[1])
    board.layout.migrate(0, "0.1.0")  # so the first restart recorded is the new slot's
    board.services.restarts.append("venv-a")
    result = board.updater().apply()
    assert result is not None and result.outcome == "rolled_back"
    assert "did not start" in (result.reason or "")
    assert running_version(board.layout) == "0.1.0"


def test_a_wheel_that_fails_to_import_never_reaches_the_link(
    make_board: MakeBoard, fleet: tuple[Path, Signer, Signer]
) -> None:
    board = make_board("0.1.0")
    board.stage(4, "0.2.0", fleet[1], broken=True)

    result = board.updater().apply()

    assert result is not None and result.outcome == "rejected"
    assert "the new version failed" in (result.reason or "")
    assert "orchard_missing_dep" in (result.reason or "")
    assert _link(board) == "venv-a" and running_version(board.layout) == "0.1.0"
    assert not board.layout.slot("venv-b").exists()  # the half-made environment is removed
    assert board.services.restarts == []  # the running agent was never touched


def test_unsigned_foreign_or_tampered_releases_are_refused(
    make_board: MakeBoard, fleet: tuple[Path, Signer, Signer]
) -> None:
    board = make_board("0.1.0")
    board.layout.migrate(0, "0.1.0")
    before = sorted(p.name for p in board.layout.base.iterdir())

    board.stage(5, "0.2.0", None)
    result = board.updater().apply()
    assert result is not None and result.outcome == "rejected"
    assert "not signed by the fleet" in (result.reason or "")

    board.stage(6, "0.2.0", fleet[2])  # another CA's signer
    result = board.updater().apply()
    assert result is not None and "(issuer)" in (result.reason or "")

    staged = board.stage(7, "0.2.0", fleet[1])
    wheel = next(staged.glob("orchard_dep-*.whl"))
    wheel.write_bytes(wheel.read_bytes()[:-1] + b"X")  # swapped after the agent checked it
    result = board.updater().apply()
    assert result is not None and result.outcome == "rejected"
    assert "orchard_dep-1.0-py3-none-any.whl" in (result.reason or "")
    assert "sha256" in (result.reason or "")

    staged = board.stage(8, "0.2.0", fleet[1])
    wheel = next(staged.glob("orchard_dep-*.whl"))
    wheel.unlink()
    os.symlink("/dev/zero", wheel)  # would fill /opt if followed
    result = board.updater().apply()
    assert result is not None and result.outcome == "rejected"
    assert "expected a file. Received: a symbolic link" in (result.reason or "")
    wheel.unlink()

    staged = board.stage(9, "0.2.0", fleet[1])
    wheel = next(staged.glob("orchard_dep-*.whl"))
    wheel.unlink()
    os.mkfifo(wheel)  # would block the updater if opened for reading without O_NONBLOCK
    result = board.updater().apply()
    assert result is not None and result.outcome == "rejected"
    assert "expected a regular file" in (result.reason or "")
    wheel.unlink()

    assert running_version(board.layout) == "0.1.0" and _link(board) == "venv-a"
    assert sorted(p.name for p in board.layout.base.iterdir()) == before
    assert board.services.restarts == []


def test_a_full_disk_is_refused_before_anything_changes(
    make_board: MakeBoard, fleet: tuple[Path, Signer, Signer], monkeypatch: pytest.MonkeyPatch
) -> None:
    board = make_board("0.1.0")
    board.layout.migrate(0, "0.1.0")
    board.stage(9, "0.2.0", fleet[1])
    real = os.statvfs

    class Full:
        def __init__(self, st: os.statvfs_result) -> None:
            self.f_frsize, self.f_bavail = st.f_frsize, 10

    monkeypatch.setattr("agent.software.apply.os.statvfs", lambda p: Full(real(p)))
    result = board.updater().apply()
    assert result is not None and result.outcome == "rejected"
    assert "the disk is full" in (result.reason or "") and "MB free" in (result.reason or "")
    assert running_version(board.layout) == "0.1.0"


@pytest.mark.parametrize("phase", ["installing", "switched"])
def test_recovery_after_a_power_cut_puts_the_complete_old_version_back(
    make_board: MakeBoard, fleet: tuple[Path, Signer, Signer], phase: str
) -> None:
    """What the journal says at the moment the power went: the boot-time recovery closes it."""
    board = make_board("0.1.0")
    board.stage(11, "0.2.0", fleet[1])
    assert board.updater().apply() is not None  # 0.2.0 in venv-b, committed
    board.stage(12, "0.3.0", fleet[1])
    layout = board.layout
    # The power went out with the journal at `phase` (for "switched": the link on the new one).
    layout.write_journal(Journal(12, "0.3.0", phase, "venv-b", "venv-a", "0.2.0"))  # type: ignore[arg-type]
    if phase == "switched":
        layout.point("venv-a")

    result = board.updater().recover()

    assert result is not None and result.outcome == "rolled_back" and result.seq == 12
    assert "power went out" in (result.reason or "")
    assert _link(board) == "venv-b" and running_version(layout) == "0.2.0"
    assert not board.files.request.exists()  # not tried again at every boot
    assert board.updater().recover() is None  # closed once


def test_a_link_lost_between_the_two_renames_is_restored_and_the_update_goes_on(
    make_board: MakeBoard, fleet: tuple[Path, Signer, Signer]
) -> None:
    board = make_board("0.1.0")
    board.stage(1, "0.2.0", fleet[1])  # the board's first update, which migrates
    layout = board.layout
    layout.write_journal(Journal(1, "0.1.0", "migrating", "venv-a", "venv-b"))
    os.rename(layout.link, layout.slot("venv-a"))  # the power went out after the first rename
    assert board.updater().recover() is None
    assert _link(board) == "venv-a" and running_version(layout) == "0.1.0"
    # The closed migration is not taken for the update's outcome: the update is done now.
    result = board.updater().apply()
    assert result is not None and (result.outcome, result.running) == ("applied", "0.2.0")
    assert _link(board) == "venv-b" and running_version(layout) == "0.2.0"


def test_an_updater_failure_at_the_switch_goes_back_and_answers(
    make_board: MakeBoard, fleet: tuple[Path, Signer, Signer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error no check foresaw (here the disk full at the link's rename) must not leave the
    request behind: orchard-update.path would start the updater again and again."""
    board = make_board("0.1.0")
    board.layout.migrate(0, "0.1.0")
    board.stage(31, "0.2.0", fleet[1])
    real = board.layout.point

    def full(slot: str) -> None:
        if slot == "venv-b":
            raise OSError(28, "No space left on device")
        real(slot)

    monkeypatch.setattr(board.layout, "point", full)
    result = board.updater().apply()
    assert result is not None and result.outcome == "rolled_back", result
    assert "the updater failed" in (result.reason or "") and "No space" in (result.reason or "")
    assert _link(board) == "venv-a" and running_version(board.layout) == "0.1.0"
    assert not board.files.request.exists() and board.files.read_result() == result
    journal = board.layout.read_journal()
    assert journal is not None and journal.phase == "rolled_back"


def test_an_unreadable_request_is_removed(make_board: MakeBoard) -> None:
    board = make_board("0.1.0")
    board.files.dir.mkdir(parents=True, exist_ok=True)
    board.files.request.write_text('{"seq": 3}')
    assert board.updater().apply() is None
    assert not board.files.request.exists() and not board.files.result.exists()
    assert not board.layout.link.is_symlink()  # nothing moved: still the first-boot directory


@pytest.mark.parametrize("phase", ["installing", "switched"])
def test_an_updater_killed_mid_update_leaves_a_complete_environment(
    make_board: MakeBoard, fleet: tuple[Path, Signer, Signer], phase: str
) -> None:
    """SIGKILL while pip installs, or while the new agent is on trial: recovery (what
    orchard-update-recover.service runs at the next boot) puts the complete old version back."""
    import signal
    import subprocess
    import sys

    from tests.waiting import wait_until

    board = make_board("0.1.0")
    board.stage(21, "0.2.0", fleet[1])
    layout = board.layout
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.agent.software.killed", str(layout.base),
         str(board.files.dir.parent), str(board.ca_pem)],
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_until(
            lambda: (j := layout.read_journal()) is not None and j.phase == phase,
            120,
            f"the updater at {phase}",
            every=0.01,
        )
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # pip with it: the power cut of this process tree
        child.wait(30)
    journal = layout.read_journal()
    assert journal is not None and journal.phase == phase  # not closed by anyone

    result = board.updater().recover()

    assert result is not None and result.outcome == "rolled_back", result
    assert _link(board) == "venv-a" and running_version(layout) == "0.1.0"
    assert not board.files.request.exists()
    # The old environment is intact: pip finds every requirement of what it installed.
    subprocess.run(
        [str(layout.link / "bin" / "python"), "-m", "pip", "check"], check=True, timeout=120
    )
