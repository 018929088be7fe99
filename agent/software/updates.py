"""The running agent's side of software updates, used by the remote-command worker.

    updates = SoftwareUpdates(stager, files)          # stager knows the running version
    updates.begin(command, signer_pem)    # staged + request.json written, or StageError
    result = updates.take_result()        # the updater's outcome, once, then removed

The worker (agent/remote/service.py) acks ``updating`` after :meth:`begin`, and the outcome
(``applied``, ``rolled_back``, ``rejected``) when :meth:`take_result` returns one: at the next
start (the updater restarted the agent on one version or the other) or while it runs.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from agent.config import AgentSettings
from agent.delivery.fetch import Fetcher
from agent.software.files import UpdateFiles, UpdateRequest, UpdateResult
from agent.software.layout import BASE
from agent.software.manifest import PROJECT, ManifestError, SoftwareRef
from agent.software.stage import Stager

BASE_ENV = "ORCHARD_UPDATE_BASE"  # tests: where the environments live instead of /opt/orchard

logger = logging.getLogger(__name__)


class SoftwareUpdates:
    def __init__(self, stager: Stager, files: UpdateFiles) -> None:
        self.stager = stager
        self.files = files

    @property
    def running_version(self) -> str:
        return self.stager.running_version

    @property
    def installing(self) -> str | None:
        """The release the root updater has been asked to install and has not answered yet."""
        try:
            request = self.files.read_request()
        except (OSError, ManifestError):  # one it cannot read is still the updater's to remove
            return "a release"
        return None if request is None else request.version

    @property
    def in_flight(self) -> bool:
        return self.files.request.exists() or self.files.result.exists()

    def begin(self, seq: int, ref: SoftwareRef, signer_pem: bytes) -> UpdateRequest:
        """Stage release ``ref`` for command ``seq`` (raises :class:`StageError`)."""
        return self.stager.stage(seq, ref, signer_pem)

    def take_result(self) -> UpdateResult | None:
        try:
            result = self.files.read_result()
        except ManifestError as exc:
            logger.warning("update result unreadable, removed: %s", exc)
            self.files.result.unlink(missing_ok=True)
            return None
        if result is None:
            return None
        self.files.result.unlink(missing_ok=True)
        if not self.files.request.exists():  # no newer request waits: the staging goes
            self.files.clean()
        logger.info(
            "update %d to %s: %s (running %s)%s",
            result.seq,
            result.version,
            result.outcome,
            result.running,
            f": {result.reason}" if result.reason else "",
        )
        return result


def software_updates(
    settings: AgentSettings, fetcher: Fetcher, clock: Callable[[], float] = time.time
) -> SoftwareUpdates | None:
    """Updates for an agent installed by ``orchard-provision`` (``/opt/orchard/venv`` exists,
    so the root updater does too); ``None`` elsewhere (a laptop, the demo)."""
    base = Path(os.environ.get(BASE_ENV) or BASE)
    if not (base / "venv").exists():
        return None
    try:
        running = version(PROJECT)
    except PackageNotFoundError:
        return None
    files = UpdateFiles(settings.state_dir)
    stager = Stager(
        files,
        fetcher,
        trust_ca=settings.models.trust_ca,
        running_version=running,
        install_base=base,
        clock=clock,
    )
    return SoftwareUpdates(stager, files)
