"""The models the coordinator can deliver: the rounds' bundles under ``runs/``, as Artifacts.

A federated round writes ``runs/<run_id>/round-<n>/manifest.json`` and ``model.tflite``
(coordinator/federation/checkpoint.py); its manifest's ``version`` (``<run_id>.<n>``) names it
on the wire. :meth:`Catalog.artifact` turns one round into the
:class:`~agent.delivery.desired.Artifact` a desired-model message carries: both digests and
sizes, the URL boards fetch it from (``<base_url>/models/<version>``) and, with a signer, the
signature over ``signed_bytes``. Digests are cached by (path, mtime, size), and so is the whole
Artifact, so its signature stays the same while the files do.

:meth:`Catalog.path` is all the artifact server (server.py) may open: one of three names for a
version the catalog knows, nothing else (no path from a request ever reaches the filesystem).
"""

from __future__ import annotations

import hashlib
import logging
import re
import stat
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

from cryptography import x509

from agent.delivery.desired import Artifact, signed_bytes
from coordinator.delivery.errors import ArtifactError, DeliveryError, NotServed
from models.errors import ManifestError
from models.manifest import MANIFEST_FILE, MODEL_FILE, Manifest
from orchard_common.signing import Signer, cert_fingerprint, sign_artifact

if TYPE_CHECKING:
    from coordinator.delivery.settings import DeliverySettings

logger = logging.getLogger(__name__)

SIGNER_FILE: Final = "signer.pem"
FILES: Final = (MANIFEST_FILE, MODEL_FILE, SIGNER_FILE)
# A run id or a version: one URL path segment, never "." or ".." (no traversal).
NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_ROUND_DIR = re.compile(r"^round-([1-9][0-9]*)$")

StatKey = tuple[int, int, int]  # inode, mtime_ns, size


def _stat(path: Path) -> StatKey | None:
    """The cache key of a regular file, or ``None`` when there is none at ``path``."""
    try:
        st = path.stat()
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class Catalog:
    """Round bundles under ``runs_dir`` as Artifacts served from ``base_url`` (see module doc)."""

    def __init__(self, runs_dir: Path, base_url: str, signer: Signer | None = None) -> None:
        self.runs_dir = Path(runs_dir)
        self.base_url = base_url.rstrip("/")
        self.signer = signer
        self._lock = threading.RLock()
        self._digests: dict[Path, tuple[StatKey, str]] = {}
        self._artifacts: dict[Path, tuple[tuple[StatKey, StatKey], Artifact]] = {}
        self._versions: dict[str, Path] = {}  # version -> its round directory

    @property
    def software_dir(self) -> Path:
        """Published agent releases (coordinator/software/release.py): ``<state_dir>/software``."""
        return self.runs_dir.parent / "software"

    def software_path(self, version: str, name: str) -> Path:
        """``manifest.json`` of a published release, or a wheel its manifest lists."""
        if not NAME.match(version) or not NAME.match(name):
            raise NotServed(f"software/{version}/{name}")
        manifest = self.software_dir / version / MANIFEST_FILE
        if not manifest.is_file():
            raise NotServed(f"software release {version}")
        if name != MANIFEST_FILE:
            from agent.software.manifest import ManifestError as SoftwareManifestError
            from agent.software.manifest import SoftwareManifest

            try:
                listed = {w.file for w in SoftwareManifest.from_json(manifest.read_bytes()).wheels}
            except (OSError, SoftwareManifestError) as exc:
                raise DeliveryError(f"software release {version}: {exc}") from None
            if name not in listed:
                raise NotServed(f"software/{version}/{name}")
        path = self.software_dir / version / name
        if _stat(path) is None:
            raise NotServed(f"software/{version}/{name}")
        return path

    @classmethod
    def from_settings(cls, settings: DeliverySettings, runs_dir: Path) -> Catalog:
        """``[delivery]``'s URL and signer (``DeliveryError`` when the signer cannot load)."""
        return cls(runs_dir, settings.url, settings.signer())

    def artifact(self, run_id: str, round_: int) -> Artifact:
        """Round ``round_`` of run ``run_id``, or ``ArtifactError`` naming the file and why."""
        if not isinstance(run_id, str) or not NAME.match(run_id):
            raise ArtifactError(
                str(run_id),
                round_,
                "runs/",
                f"expected a run id of letters, digits, '.', "
                f"'_', '+' or '-' (one path segment). Received: run_id={run_id!r}",
            )
        if isinstance(round_, bool) or not isinstance(round_, int) or round_ < 1:
            raise ArtifactError(
                run_id, round_, "round", f"expected an integer >= 1. Received: round_={round_!r}"
            )
        with self._lock:
            return self._artifact(run_id, round_, self.runs_dir / run_id / f"round-{round_}")

    def _artifact(self, run_id: str, round_: int, directory: Path) -> Artifact:
        manifest_path, model_path = directory / MANIFEST_FILE, directory / MODEL_FILE
        keys = []
        for path in (manifest_path, model_path):
            key = _stat(path)
            if key is None:
                raise ArtifactError(run_id, round_, path.name, f"expected a file at {path}")
            keys.append(key)
        key_pair = (keys[0], keys[1])
        cached = self._artifacts.get(directory)
        if cached is not None and cached[0] == key_pair:
            return cached[1]
        try:
            manifest = Manifest.load(manifest_path)
        except ManifestError as exc:
            raise ArtifactError(run_id, round_, MANIFEST_FILE, str(exc)) from None
        if manifest.file != MODEL_FILE:
            raise ArtifactError(
                run_id,
                round_,
                MANIFEST_FILE,
                f"expected file.name {MODEL_FILE!r}. Received: name={manifest.file!r}",
            )
        if not NAME.match(manifest.version):
            raise ArtifactError(
                run_id,
                round_,
                MANIFEST_FILE,
                "expected a version of letters, digits, '.', '_', '+' or '-' (one URL path "
                f"segment). Received: version={manifest.version!r}",
            )
        model_sha = self._digest(model_path, keys[1])
        if (model_sha, keys[1][2]) != (manifest.sha256, manifest.size_bytes):
            raise ArtifactError(
                run_id,
                round_,
                MODEL_FILE,
                f"expected the file manifest.json describes (sha256 {manifest.sha256}, "
                f"{manifest.size_bytes} bytes). Received: sha256={model_sha}, size={keys[1][2]}",
            )
        other = self._versions.get(manifest.version)
        if other is not None and other != directory and self._still(other, manifest.version):
            raise ArtifactError(
                run_id,
                round_,
                MANIFEST_FILE,
                f"expected a version no other round has. Received: version="
                f"{manifest.version!r}, which {other} also holds",
            )
        artifact = Artifact(
            version=manifest.version,
            sha256=model_sha,
            size=keys[1][2],
            manifest_sha256=self._digest(manifest_path, keys[0]),
            manifest_size=keys[0][2],
            url=f"{self.base_url}/models/{quote(manifest.version, safe='')}",
        ).check()
        if self.signer is not None:
            artifact = sign_artifact(artifact, self.signer, signed_bytes=signed_bytes)
        self._artifacts[directory] = (key_pair, artifact)
        self._versions[manifest.version] = directory
        logger.debug("catalog: %s from %s", artifact.version, directory)
        return artifact

    def _still(self, directory: Path, version: str) -> bool:
        """Whether ``directory`` still holds ``version`` (a round may have been removed)."""
        try:
            return Manifest.load(directory / MANIFEST_FILE).version == version
        except ManifestError:
            return False

    def _digest(self, path: Path, key: StatKey) -> str:
        cached = self._digests.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        self._digests[path] = (key, digest.hexdigest())
        return digest.hexdigest()

    def find(self, version: str) -> Artifact | None:
        """The Artifact named ``version``: a round seen before, ``<run_id>.<n>``, or a scan."""
        if not isinstance(version, str) or not NAME.match(version):
            return None
        with self._lock:
            known = self._versions.get(version)
            if known is not None:
                found = self._try(known)
                if found is not None and found.version == version:
                    return found
                del self._versions[version]
            run_id, _, number = version.rpartition(".")
            if run_id and number.isdigit():
                found = self._try(self.runs_dir / run_id / f"round-{int(number)}")
                if found is not None and found.version == version:
                    return found
            for directory in self._rounds():
                found = self._try(directory)
                if found is not None and found.version == version:
                    return found
        return None

    def _rounds(self) -> list[Path]:
        try:
            runs = sorted(p for p in self.runs_dir.iterdir() if NAME.match(p.name) and p.is_dir())
        except OSError:
            return []
        rounds: list[Path] = []
        for run in runs:
            try:
                rounds += sorted(p for p in run.iterdir() if _ROUND_DIR.match(p.name))
            except OSError:
                continue
        return rounds

    def _try(self, directory: Path) -> Artifact | None:
        match = _ROUND_DIR.match(directory.name)
        run_id = directory.parent.name
        if match is None or not NAME.match(run_id) or directory.parent.parent != self.runs_dir:
            return None
        try:
            return self._artifact(run_id, int(match.group(1)), directory)
        except (ArtifactError, OSError) as exc:
            logger.debug("catalog: skipping %s: %s", directory, exc)
            return None

    def path(self, version: str, name: str) -> Path:
        """The file ``name`` of ``version``; ``NotServed`` for anything else (the server's 404).

        ``name`` is ``manifest.json``, ``model.tflite`` or ``signer.pem`` (the signer's
        certificate, the same for every version; only when this catalog signs).
        """
        if name not in FILES:
            raise NotServed(
                f"name: expected one of {', '.join(FILES)}. Received: name={name[:80]!r}"
            )
        if self.find(version) is None:
            raise NotServed(
                f"version: expected a model version in the catalog. Received: "
                f"version={version[:80]!r}"
            )
        if name == SIGNER_FILE:
            return self._signer_path()
        with self._lock:
            return self._versions[version] / name

    def _signer_path(self) -> Path:
        if self.signer is None:
            raise NotServed(
                "signer.pem: expected a signing coordinator. Received: no [delivery] signing_cert "
                "(models are delivered unsigned)"
            )
        # Boards check signer.pem against the fingerprint signed into each Artifact: serving
        # a certificate replaced on disk since the signer was loaded would fail every board.
        if _file_fingerprint(self.signer.cert_path) != self.signer.fingerprint:
            raise DeliveryError(
                f"{self.signer.cert_path}: expected the signing certificate loaded at start "
                f"(sha256 {self.signer.fingerprint}). Received: another one; restart the "
                "coordinator to sign with it"
            )
        return self.signer.cert_path


def _file_fingerprint(path: Path) -> str | None:
    try:
        return cert_fingerprint(x509.load_pem_x509_certificate(path.read_bytes()))
    except (OSError, ValueError):
        return None
