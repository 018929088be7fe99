"""The agent's half of a software update: fetch, check and stage a release, then ask for it.

    stager = Stager(UpdateFiles(state_dir), HttpFetcher(...), trust_ca=..., signers=...)
    request = stager.stage(command.seq, command.update, signer_pem)   # or raises StageError

In this order: ``manifest.json`` is fetched (its sha256 must be the one the signed command
names), decoded, checked for this board's Python and verified against ``[models] trust_ca``;
the free space is checked (the wheels in the state directory, about three times their size
under ``/opt/orchard``); then each wheel is taken from the staging directory of an earlier try,
or the card's wheelhouse (``/var/cache/orchard/wheelhouse``) when its digest matches, or
downloaded (size and sha256 checked as it arrives). Only then is ``request.json`` written. Any
failure leaves the running agent as it was and says why (:class:`StageError`); a download cut
half-way leaves only ``.part`` files, which the next try replaces.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from agent.delivery.fetch import Fetcher
from agent.errors import AgentError, DeliveryError
from agent.software.apply import SIGNER_FILE, SPACE_FACTOR, SPACE_MARGIN
from agent.software.files import UpdateFiles, UpdateRequest
from agent.software.layout import BASE
from agent.software.manifest import (
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    ManifestError,
    ReleaseRefused,
    SoftwareManifest,
    SoftwareRef,
    check_release,
    file_sha256,
)

logger = logging.getLogger(__name__)

CARD_WHEELHOUSE = Path("/var/cache/orchard/wheelhouse")


class StageError(AgentError):
    """The release was not staged: the reason, for a ``rejected`` ack."""


class Stager:
    def __init__(
        self,
        files: UpdateFiles,
        fetcher: Fetcher,
        *,
        trust_ca: Path | None,
        running_version: str,
        local_wheels: Path | None = CARD_WHEELHOUSE,
        install_base: Path = BASE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.files = files
        self.fetcher = fetcher
        self.trust_ca = trust_ca
        self.running_version = running_version
        self.local_wheels = local_wheels
        self.install_base = install_base
        self.clock = clock

    def stage(self, seq: int, ref: SoftwareRef, signer_pem: bytes) -> UpdateRequest:
        self.files.clean(keep=ref.version)  # earlier releases and requests
        staging = self.files.staging(ref.version)
        staging.mkdir(parents=True, exist_ok=True)
        manifest = self._manifest(ref, staging)
        self._verify(manifest, signer_pem)
        (staging / SIGNER_FILE).write_bytes(signer_pem)
        self._check_space(manifest, staging)
        base = ref.manifest_url.rsplit("/", 1)[0]
        reused = 0
        for w in manifest.wheels:
            dest = staging / w.file
            if _matches(dest, w.size, w.sha256):
                reused += 1
                continue
            local = None if self.local_wheels is None else self.local_wheels / w.file
            if local is not None and _matches(local, w.size, w.sha256):
                shutil.copyfile(local, dest)
                reused += 1
                continue
            try:
                self.fetcher.fetch(f"{base}/{w.file}", dest, size=w.size, sha256=w.sha256)
            except DeliveryError as exc:
                raise StageError(f"download of {w.file} failed: {exc}") from None
        logger.info(
            "release %s staged: %d wheels (%d reused, %.1f MB)",
            manifest.version,
            len(manifest.wheels),
            reused,
            manifest.total_bytes / 1e6,
        )
        request = UpdateRequest(
            seq=seq,
            version=manifest.version,
            from_version=self.running_version,
            staged=str(staging),
            requested=self.clock(),
        )
        self.files.write_request(request)
        return request

    def _manifest(self, ref: SoftwareRef, staging: Path) -> SoftwareManifest:
        path = staging / MANIFEST_FILE
        try:
            self.fetcher.fetch(ref.manifest_url, path, size=None, sha256=ref.manifest_sha256)
            data = path.read_bytes()
        except DeliveryError as exc:
            raise StageError(f"manifest: {exc}") from None
        if len(data) > MAX_MANIFEST_BYTES:
            raise StageError(
                f"manifest: expected at most {MAX_MANIFEST_BYTES} bytes. Received: {len(data)}"
            )
        try:
            manifest = SoftwareManifest.from_json(data)
        except ManifestError as exc:
            raise StageError(str(exc)) from None
        if manifest.version != ref.version:
            raise StageError(
                f"manifest.version: expected {ref.version!r} (the command's). "
                f"Received: version={manifest.version!r}"
            )
        return manifest

    def _verify(self, manifest: SoftwareManifest, signer_pem: bytes) -> None:
        try:
            check_release(manifest, signer_pem, self.trust_ca, self.clock())
        except ReleaseRefused as exc:
            raise StageError(str(exc)) from None

    def _check_space(self, manifest: SoftwareManifest, staging: Path) -> None:
        need_here = manifest.total_bytes + SPACE_MARGIN
        free_here = _free(staging)
        if free_here < need_here:
            raise StageError(
                f"disk: expected {need_here >> 20} MB free in {staging.parent} to download "
                f"release {manifest.version}. Received: free={free_here >> 20} MB "
                "(the disk is full)"
            )
        if self.install_base.is_dir():
            need = SPACE_FACTOR * manifest.total_bytes + SPACE_MARGIN
            free = _free(self.install_base) + _inactive_bytes(self.install_base)
            if free < need:
                raise StageError(
                    f"disk: expected {need >> 20} MB free in {self.install_base} to install "
                    f"release {manifest.version}. Received: free={free >> 20} MB (the disk is full)"
                )


def _matches(path: Path, size: int, sha256: str) -> bool:
    try:
        return path.is_file() and path.stat().st_size == size and file_sha256(path) == sha256
    except OSError:
        return False


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _inactive_bytes(base: Path) -> int:
    """What removing the environment that does not run will free (the updater removes it)."""
    link = base / "venv"
    if not link.is_symlink():
        return 0
    active = Path(os.readlink(link)).name
    inactive = base / ("venv-b" if active == "venv-a" else "venv-a")
    total = 0
    for root, _dirs, names in os.walk(inactive):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total
