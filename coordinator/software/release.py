"""Publish a wheelhouse as a signed release the artifact server serves.

    release = publish(Path("wheelhouse/"), software_dir, signer, base_url)
    # software_dir/0.2.0/manifest.json + the wheels; release.ref is what an update command names

The wheelhouse is what ``orchard-provision wheelhouse`` builds for the boards (Orchard's own
wheel plus every dependency for their Python and architecture, and ``wheelhouse.json``). Its
``orchard_fl-<version>-*.whl`` names the release; the manifest lists every wheel with its size
and sha256 and is signed with ``[delivery] signing_cert`` (agent/software/manifest.py). A
version is published once: the same wheels again are accepted as they are, other wheels under
a published version are refused (bump the version).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from agent.remote.command import SoftwareRef
from agent.software.manifest import (
    MANIFEST_FILE,
    PROJECT,
    ManifestError,
    SoftwareManifest,
    Wheel,
    check_wheels,
    file_sha256,
    signed_bytes,
)
from coordinator.software.errors import ReleaseError
from models.manifest import fsync_dir, write_atomic
from orchard_common.signing import Signer, sign_artifact

logger = logging.getLogger(__name__)

_PROJECT_WHEEL = re.compile(r"^orchard_fl-([^-]+)-(?:[^-]+-)?py3-none-any\.whl$")
_CP = re.compile(r"-cp3(\d+)-")


@dataclass(frozen=True)
class Release:
    version: str
    directory: Path
    manifest: SoftwareManifest
    manifest_sha256: str
    url: str  # of manifest.json

    @property
    def ref(self) -> SoftwareRef:
        return SoftwareRef(self.version, self.url, self.manifest_sha256)


def software_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "software"


def publish(
    wheelhouse: Path,
    into: Path,
    signer: Signer,
    base_url: str,
    *,
    python: str | None = None,
    now: float | None = None,
) -> Release:
    wheels = sorted(Path(wheelhouse).glob("*.whl"))
    if not wheels:
        raise ReleaseError(f"--wheelhouse {wheelhouse}: expected wheels. Received: none")
    own = [w for w in wheels if _PROJECT_WHEEL.match(w.name)]
    if len(own) != 1:
        raise ReleaseError(
            f"--wheelhouse {wheelhouse}: expected exactly one {PROJECT} wheel. "
            f"Received: {[w.name for w in own] or 'none'}"
        )
    match = _PROJECT_WHEEL.match(own[0].name)
    assert match is not None
    version = match.group(1)
    py = python or _python(wheelhouse, wheels)
    listed = tuple(Wheel(w.name, file_sha256(w), w.stat().st_size) for w in wheels)
    manifest = SoftwareManifest(
        version=version, python=py, wheels=listed, created=time.time() if now is None else now
    )
    signed = sign_artifact(manifest, signer, signed_bytes=signed_bytes)
    try:
        SoftwareManifest.from_json(signed.to_json())  # as a board will decode it
    except ManifestError as exc:
        raise ReleaseError(f"release {version}: {exc}") from None
    target = Path(into) / version
    existing = target / MANIFEST_FILE
    if existing.is_file():
        try:
            old = SoftwareManifest.from_json(existing.read_bytes())
        except ManifestError:
            old = None
        if old is None:
            found = "is unreadable (remove it to publish again)"
        elif old.wheels != listed or old.python != py:
            found = f"lists other wheels (bump the version of {PROJECT})"
        else:
            found = ""
        if found:
            raise ReleaseError(
                f"release {version}: expected new wheels under a new version. Received: "
                f"{existing} {found}"
            )
        assert old is not None
        logger.info("release %s already published with these wheels", version)
        signed = old
        try:
            check_wheels(old, target)
        except ManifestError as exc:  # a copy a crash cut short: made again
            logger.warning("release %s: %s; copying its wheels again", version, exc)
            for w in wheels:
                _copy(w, target / w.name)
    else:
        target.mkdir(parents=True, exist_ok=True)
        for w in wheels:
            _copy(w, target / w.name)
        fsync_dir(target)  # the wheels are on disk before the manifest that lists them
        write_atomic(existing, signed.to_json().encode())
    data = existing.read_bytes()
    return Release(
        version=version,
        directory=target,
        manifest=signed,
        manifest_sha256=hashlib.sha256(data).hexdigest(),
        url=f"{base_url.rstrip('/')}/software/{version}/{MANIFEST_FILE}",
    )


def _python(wheelhouse: Path, wheels: list[Path]) -> str:
    meta = Path(wheelhouse) / "wheelhouse.json"
    if meta.is_file():
        try:
            py = json.loads(meta.read_text())["target"]["python"]
            if isinstance(py, str):
                return py
        except (ValueError, KeyError, TypeError):
            pass
    for w in wheels:
        m = _CP.search(w.name)
        if m:
            return f"3.{m.group(1)}"
    raise ReleaseError(
        f"--wheelhouse {wheelhouse}: expected wheelhouse.json or a cp3XX wheel to tell the "
        "boards' Python. Received: neither (pass --python 3.11)"
    )


def _copy(src: Path, dest: Path) -> None:
    """A copy, not a link: a wheelhouse rebuilt in place must not change what is served."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(src, tmp)
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dest)
