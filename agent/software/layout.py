"""The agent's software on the board: two virtual environments and a link, and a journal.

    /opt/orchard/
      venv -> venv-a      the link every unit runs through (ExecStart=/opt/orchard/venv/bin/...),
                          replaced atomically (a new link renamed over it, then the directory
                          fsynced): it names one complete environment or the other, never a part
      venv-a/             the environment that runs
      venv-b/             the other one: the next release is installed here, the previous one
                          stays here after an update (to switch back to)
      update.json         the journal (root only): which update is at which phase

A board provisioned before updates existed has a real directory at ``venv``; the first update
moves it to ``venv-a`` and puts the link in its place (its scripts name ``/opt/orchard/venv``,
which the link keeps valid). The journal says ``migrating`` until that is done, so a power cut
between the two renames is repaired at the next boot.

Phases: ``installing`` (the inactive environment is being built: the link still names the old
one), ``switched`` (the link names the new one, which is on trial), ``committed`` or
``rolled_back`` (done). :meth:`VenvLayout.repair` runs at boot, before the agent: a journal
left at ``installing`` or ``switched`` means the power went out mid-update, and the link is put
back on the old environment, which is complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from agent.errors import AgentError
from agent.software.files import write_json
from models.manifest import fsync_dir

logger = logging.getLogger(__name__)

Phase = Literal["migrating", "installing", "switched", "committed", "rolled_back"]
SLOTS = ("venv-a", "venv-b")
BASE = Path("/opt/orchard")


class LayoutError(AgentError):
    """The environments are not as the updater left them."""


@dataclass(frozen=True)
class Journal:
    seq: int
    version: str
    phase: Phase
    old: str  # the slot that ran before (venv-a or venv-b)
    new: str  # the slot being installed or tried
    old_version: str = ""
    reason: str | None = None

    @property
    def unfinished(self) -> bool:
        return self.phase in ("migrating", "installing", "switched")


class VenvLayout:
    def __init__(self, base: Path = BASE) -> None:
        self.base = Path(base)
        self.link = self.base / "venv"
        self.journal_path = self.base / "update.json"

    def slot(self, name: str) -> Path:
        if name not in SLOTS:
            raise LayoutError(f"slot: expected one of {', '.join(SLOTS)}. Received: {name!r}")
        return self.base / name

    def active(self) -> str | None:
        """The slot the link names; ``None`` for a real directory (not migrated yet)."""
        if not self.link.is_symlink():
            if self.link.is_dir():
                return None
            found = "nothing" if not self.link.exists() else "a file"
            raise LayoutError(f"{self.link}: expected the agent's environment. Received: {found}")
        target = os.readlink(self.link)
        name = Path(target).name
        if name not in SLOTS:
            raise LayoutError(
                f"{self.link}: expected a link to {' or '.join(SLOTS)}. Received: {target}"
            )
        return name

    @staticmethod
    def other(slot: str) -> str:
        return SLOTS[1] if slot == SLOTS[0] else SLOTS[0]

    # -- the journal -----------------------------------------------------------------------

    def read_journal(self) -> Journal | None:
        try:
            doc = json.loads(self.journal_path.read_bytes())
            return Journal(**doc)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            logger.warning("update journal %s unreadable (%s): ignored", self.journal_path, exc)
            return None

    def write_journal(self, journal: Journal) -> Journal:
        write_json(self.journal_path, asdict(journal))
        return journal

    # -- moves -----------------------------------------------------------------------------

    def migrate(self, seq: int, version: str) -> str:
        """Put a pre-update real directory at ``venv-a`` behind the link; return the active slot."""
        active = self.active()
        if active is not None:
            return active
        self.write_journal(Journal(seq, version, "migrating", SLOTS[0], SLOTS[1]))
        if self.slot(SLOTS[0]).exists():
            shutil.rmtree(self.slot(SLOTS[0]))
        os.rename(self.link, self.slot(SLOTS[0]))
        fsync_dir(self.base)
        self.point(SLOTS[0])
        logger.info("moved %s to %s behind a link", self.link, SLOTS[0])
        return SLOTS[0]

    def point(self, slot: str) -> None:
        """Make the link name ``slot``: a new link renamed over the old one, then fsync."""
        self.slot(slot)  # validates
        tmp = self.base / ".venv.new"
        tmp.unlink(missing_ok=True)
        os.symlink(slot, tmp)
        os.replace(tmp, self.link)
        fsync_dir(self.base)

    def repair(self, why: str | None = None) -> Journal | None:
        """At boot: finish or undo what a power cut interrupted (or a failed updater, ``why``).
        Returns the journal it closed (phase ``rolled_back``), or ``None`` when nothing was
        unfinished."""
        journal = self.read_journal()
        if journal is None or not journal.unfinished:
            if not self.link.exists() and not self.link.is_symlink():
                self._relink_lost()
            return None
        if journal.phase == "migrating":
            if not self.link.is_symlink() and not self.link.is_dir():  # between the renames
                self.point(SLOTS[0])
            closed = replace(journal, phase="committed", reason=None)
            self.write_journal(closed)
            return None
        reason = why or (
            "the power went out while the new version was being installed"
            if journal.phase == "installing"
            else "the power went out before the new version was confirmed healthy"
        )
        self.point(journal.old)
        closed = replace(journal, phase="rolled_back", reason=reason)
        self.write_journal(closed)
        logger.warning(
            "update %d to %s: %s; back on %s", journal.seq, journal.version, reason, journal.old
        )
        return closed

    def _relink_lost(self) -> None:
        """The link is gone (a rename it did not survive): the journal's last good slot."""
        journal = self.read_journal()
        order = list(SLOTS)
        if journal is not None:
            good = journal.new if journal.phase == "committed" else journal.old
            order.sort(key=lambda s: s != good)
        for slot in order:
            if (self.slot(slot) / "bin" / "python").exists():
                self.point(slot)
                logger.warning("%s was missing: linked to %s", self.link, slot)
                return
