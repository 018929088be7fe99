"""The signed wheelhouse manifest of an agent software release: pure stdlib.

The coordinator serves each release at ``<delivery url>/software/<version>/``: this
``manifest.json`` and the wheels it lists::

    {"format": "orchard-wheelhouse/1", "project": "orchard-fl", "version": "0.2.0",
     "python": "3.11", "created": 1765000000.0,
     "wheels": [{"file": "orchard_fl-0.2.0-py3-none-any.whl", "sha256": "...", "size": 812345},
                {"file": "numpy-2.3.5-cp311-cp311-manylinux_2_28_aarch64.whl", ...}, ...],
     "signer": "<sha256 of the signer certificate's DER>",
     "signature": "<base64 ECDSA P-256 SHA-256 over signed_bytes(manifest)>"}

The signature (by a code-signing certificate of the fleet CA, the one that signs commands and
models) covers every field but ``signer`` and ``signature`` (:func:`signed_bytes`), so a wheel
that is swapped, added or dropped fails verification. The board checks it twice: the agent
before it downloads the wheels, and the root updater (``orchard-agent software apply``) before
it installs them, against ``[models] trust_ca``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from agent.errors import AgentError

FORMAT: Final = "orchard-wheelhouse/1"
PROJECT: Final = "orchard-fl"
MANIFEST_FILE: Final = "manifest.json"
MAX_WHEELS: Final = 512
MAX_MANIFEST_BYTES: Final = 256 * 1024
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# PEP 427 file names: no path separators, no leading dot.
_WHEEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+!-]*\.whl$")
_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+!_-]{0,63}$")
_PYTHON = re.compile(r"^3\.[0-9]{1,2}$")


class ManifestError(AgentError, ValueError):
    """A manifest that does not fit the contract: names the field, the value, the expectation."""

    def __init__(self, field: str, value: Any, expected: str) -> None:
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        leaf = field.rsplit(".", 1)[-1].split("[")[0]
        super().__init__(f"{field}: expected {expected}. Received: {leaf}={shown}")
        self.field = field


@dataclass(frozen=True)
class SoftwareRef:
    """What an ``update`` command asks for: a release the coordinator serves (its manifest is
    signed too, agent/software/manifest.py; the wheels are beside it)."""

    version: str
    manifest_url: str
    manifest_sha256: str


@dataclass(frozen=True)
class Wheel:
    file: str
    sha256: str
    size: int


@dataclass(frozen=True)
class SoftwareManifest:
    version: str
    python: str
    wheels: tuple[Wheel, ...]
    created: float = 0.0
    project: str = PROJECT
    format: str = FORMAT
    signer: str | None = None
    signature: str | None = None

    @property
    def total_bytes(self) -> int:
        return sum(w.size for w in self.wheels)

    @property
    def project_wheel(self) -> Wheel:
        prefix = PROJECT.replace("-", "_") + "-" + self.version + "-"
        return next(w for w in self.wheels if w.file.startswith(prefix))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, data: str | bytes) -> SoftwareManifest:
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestError("manifest", f"{len(data)} bytes", f"at most {MAX_MANIFEST_BYTES}")
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestError("manifest", str(exc)[:60], "JSON") from None
        return cls.validate(doc)

    @classmethod
    def validate(cls, doc: Any) -> SoftwareManifest:
        if not isinstance(doc, dict):
            raise ManifestError("manifest", type(doc).__name__, "a JSON object")
        known = {"format", "project", "version", "python", "created", "wheels", "signer"}
        unknown = sorted(set(doc) - known - {"signature"})
        if unknown:
            raise ManifestError(f"manifest.{unknown[0]}", doc[unknown[0]], "no such field")
        if doc.get("format") != FORMAT:
            raise ManifestError("manifest.format", doc.get("format"), repr(FORMAT))
        if doc.get("project") != PROJECT:
            raise ManifestError("manifest.project", doc.get("project"), repr(PROJECT))
        version = _text(doc, "version", _VERSION, "a version such as 0.2.0")
        python = _text(doc, "python", _PYTHON, "a Python version such as 3.11")
        created = doc.get("created", 0.0)
        if isinstance(created, bool) or not isinstance(created, int | float) or created < 0:
            raise ManifestError("manifest.created", created, "a time (seconds since 1970)")
        raw = doc.get("wheels")
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_WHEELS:
            raise ManifestError("manifest.wheels", raw, f"a list of 1 to {MAX_WHEELS} wheels")
        wheels = tuple(_wheel(w, i) for i, w in enumerate(raw))
        names = [w.file for w in wheels]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ManifestError("manifest.wheels", dup, "each wheel listed once")
        manifest = cls(
            version=version,
            python=python,
            wheels=wheels,
            created=float(created),
            signer=_optional(doc, "signer", _HEX64, "the sha256 of a certificate"),
            signature=_optional(doc, "signature", None, "a base64 signature"),
        )
        try:
            manifest.project_wheel  # noqa: B018 - the release must contain its own wheel
        except StopIteration:
            want = f"{PROJECT.replace('-', '_')}-{version}-*.whl"
            raise ManifestError("manifest.wheels", names[:3], f"a wheel named {want}") from None
        return manifest


class ReleaseRefused(AgentError):
    """A release this board must not install: why (for a ``rejected`` answer)."""


def check_release(
    manifest: SoftwareManifest, signer_pem: bytes, trust_ca: Path | None, now: float
) -> None:
    """For this board's Python, and signed by a code-signing certificate of the fleet CA in
    ``trust_ca`` valid at ``now``; raise :class:`ReleaseRefused` naming why not."""
    import datetime as dt
    import sys

    have = "{}.{}".format(*sys.version_info[:2])
    if manifest.python != have:
        raise ReleaseRefused(
            f"manifest.python: expected this board's Python {have}. Received: "
            f"python={manifest.python!r} (build the wheelhouse with orchard-provision "
            f"wheelhouse --python {have})"
        )
    if trust_ca is None:
        raise ReleaseRefused(
            "software updates need a board provisioned with the fleet CA ([models] trust_ca)"
        )
    if manifest.signature is None:
        raise ReleaseRefused(
            f"release {manifest.version} not signed by the fleet: expected a signed manifest. "
            "Received: signature=None"
        )
    from orchard_common.errors import SignatureError
    from orchard_common.signing import verify_artifact

    try:
        verify_artifact(
            manifest,
            signer_pem,
            trust_ca.read_bytes(),
            signed_bytes=signed_bytes,
            now=dt.datetime.fromtimestamp(now, dt.UTC),
        )
    except SignatureError as exc:
        raise ReleaseRefused(
            f"release {manifest.version} not signed by the fleet ({exc.reason}): {exc}"
        ) from None
    except OSError as exc:
        raise ReleaseRefused(f"[models] trust_ca {trust_ca}: {exc.strerror}") from None


def signed_bytes(manifest: SoftwareManifest) -> bytes:
    """What the signature covers: every field but ``signer`` and ``signature``."""
    body = {k: v for k, v in asdict(manifest).items() if k not in ("signer", "signature")}
    return (FORMAT + "\n" + json.dumps(body, sort_keys=True, separators=(",", ":"))).encode()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_wheels(manifest: SoftwareManifest, directory: Path) -> None:
    """Every listed wheel is in ``directory`` with its size and digest; raise naming the first
    that is missing or differs."""
    for w in manifest.wheels:
        path = directory / w.file
        try:
            size = path.stat().st_size
        except OSError:
            raise ManifestError(
                f"wheels[{w.file}]", "missing", f"{w.file} in {directory}"
            ) from None
        if size != w.size:
            raise ManifestError(f"wheels[{w.file}].size", size, f"{w.size} bytes")
        got = file_sha256(path)
        if got != w.sha256:
            raise ManifestError(f"wheels[{w.file}].sha256", got, f"sha256 {w.sha256}")


def _wheel(raw: Any, i: int) -> Wheel:
    where = f"manifest.wheels[{i}]"
    if not isinstance(raw, dict) or set(raw) != {"file", "sha256", "size"}:
        raise ManifestError(where, raw, "an object with file, sha256 and size")
    name, digest, size = raw["file"], raw["sha256"], raw["size"]
    if not isinstance(name, str) or not _WHEEL.match(name) or len(name) > 200:
        raise ManifestError(f"{where}.file", name, "a wheel file name (no directories)")
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise ManifestError(f"{where}.sha256", digest, "64 lowercase hex digits")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size < 2**40:
        raise ManifestError(f"{where}.size", size, "a positive number of bytes")
    return Wheel(name, digest, size)


def _text(doc: dict[str, Any], key: str, pattern: re.Pattern[str], expected: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not pattern.match(value):
        raise ManifestError(f"manifest.{key}", value, expected)
    return value


def _optional(
    doc: dict[str, Any], key: str, pattern: re.Pattern[str] | None, expected: str
) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 1024 or (pattern and not pattern.match(value)):
        raise ManifestError(f"manifest.{key}", value, expected)
    return value
