"""The board's remote-configuration files in ``<state_dir>/remote/`` (docs/architecture.md, Files).

    agent.toml             the overlay over the provisioned agent.toml (agent/overlay.py)
    agent.toml.last-good   the overlay that last ran healthy (absent: none)
    state.json             {"seq", "digest"}: the last command acted on (its payload's sha256)
    pending.json           a change on trial (it needed a restart), see :class:`Pending`
    signers/<sha256>.pem   signer certificates that verified, by fingerprint

One writer, the agent: each file is replaced whole (temp + fsync + ``os.replace`` + directory
fsync), so a power cut leaves the old file or the new one. A change is written in this order:
the last-good copy, the pending marker, the overlay, then ``state.json``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from agent.overlay import LAST_GOOD_FILE, OVERLAY_FILE, Overlay, remote_dir
from models.manifest import write_atomic

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pending:
    """A change that needed a restart, on trial until the agent is healthy with it.

    ``starts`` counts the agent's starts with it (crashes included, counted before the config
    loads); after ``trial_starts`` starts, or ``healthy_within_s`` into one, the last good overlay
    comes back and ``outcome`` becomes ``rolled_back`` with ``reason`` until the ack is sent.
    """

    seq: int
    config_version: str
    keys: tuple[str, ...]
    need_broker: bool
    healthy_within_s: float
    trial_starts: int
    written: float
    starts: int = 0
    last_error: str | None = None
    outcome: Literal["rolled_back"] | None = None
    reason: str | None = None


class RemoteFiles:
    def __init__(self, state_dir: Path) -> None:
        self.dir = remote_dir(state_dir)
        self.overlay = self.dir / OVERLAY_FILE
        self.last_good = self.dir / LAST_GOOD_FILE
        self.state = self.dir / "state.json"
        self.pending = self.dir / "pending.json"
        self.signers = self.dir / "signers"

    # -- the last command acted on -------------------------------------------------------------

    def last(self) -> tuple[int, str | None]:
        """``(seq, digest)`` of the last command acted on; ``(-1, None)`` before the first."""
        data = self._json(self.state)
        if data is None:
            return -1, None
        try:
            return int(data["seq"]), str(data["digest"])
        except (KeyError, TypeError, ValueError):
            logger.warning("%s unreadable; no command acted on yet", self.state)
            return -1, None

    def record(self, seq: int, digest: str) -> None:
        self._write(self.state, {"seq": seq, "digest": digest})

    # -- the change on trial ---------------------------------------------------------------------

    def read_pending(self) -> Pending | None:
        data = self._json(self.pending)
        if data is None:
            return None
        try:
            known = {f.name for f in fields(Pending)}
            values = {k: v for k, v in data.items() if k in known}
            values["keys"] = tuple(values.get("keys", ()))
            return Pending(**values)
        except (TypeError, ValueError) as exc:
            logger.warning("%s unreadable (%s); no change on trial", self.pending, exc)
            return None

    def write_pending(self, pending: Pending) -> None:
        self._write(self.pending, asdict(pending))

    def clear_pending(self) -> None:
        self.pending.unlink(missing_ok=True)

    # -- the overlay ----------------------------------------------------------------------------

    def keep_last_good(self) -> None:
        """The overlay now in place (it runs healthy) becomes the last good one."""
        if self.overlay.exists():
            write_atomic(self.last_good, self.overlay.read_bytes())
        else:
            self.last_good.unlink(missing_ok=True)

    def write_overlay(self, overlay: Overlay) -> None:
        write_atomic(self.overlay, overlay.dumps().encode("utf-8"))

    def restore_last_good(self) -> None:
        """The last good overlay back in place (no overlay when there was none)."""
        if self.last_good.exists():
            write_atomic(self.overlay, self.last_good.read_bytes())
        else:
            self.overlay.unlink(missing_ok=True)

    # -- helpers --------------------------------------------------------------------------------

    def _json(self, path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            logger.warning("%s unreadable: %s", path, exc)
            return None
        return data if isinstance(data, dict) else None

    @staticmethod
    def _write(path: Path, data: dict[str, Any]) -> None:
        write_atomic(path, json.dumps(data, sort_keys=True).encode("utf-8"))
