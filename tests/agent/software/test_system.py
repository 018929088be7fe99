"""The updater's reading of the agent's note on a failed handover (agent/software/system.py).

The updater runs as root; the note lies in the state directory, which the agent's user owns.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.software.system import Systemctl


def test_the_note_is_read_once_and_bounded(tmp_path: Path) -> None:
    note = tmp_path / "handover-failed"
    systemctl = Systemctl(note)
    assert systemctl._handover_failed() is None
    note.write_text("the new agent exited with status 1 before it served\n" + "x" * 4096)
    why = systemctl._handover_failed()
    assert why is not None and why.startswith("the new agent exited with status 1")
    assert len(why) <= 512 and not note.exists()


def test_a_link_or_a_fifo_put_there_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret")
    note = tmp_path / "handover-failed"
    os.symlink(secret, note)
    why = Systemctl(note)._handover_failed()
    assert why is not None and "secret" not in why and not note.is_symlink()

    os.mkfifo(note)  # opening it for reading would block without O_NONBLOCK
    assert Systemctl(note)._handover_failed() == "not a regular file"
    assert not note.exists()
