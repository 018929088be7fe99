"""The hand-over between the agent (user ``orchard``) and the root updater: two small files.

    <state_dir>/update/
      <version>/          the staged release: manifest.json, signer.pem and its wheels
      request.json        written by the agent once the release is staged and checked; its
                          appearance starts orchard-update.service (orchard-update.path)
      result.json         written by the updater when it is done (applied, rolled_back or
                          rejected); the agent that runs afterwards acks it and removes it

Both are written atomically (tmp + fsync + rename). The updater trusts nothing in them but the
release's signature: it verifies the manifest and every wheel again after copying them into
``/opt/orchard`` (root only), so a tampered staging directory is refused, not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from agent.software.manifest import ManifestError
from models.manifest import write_atomic

UPDATE_DIR = "update"
Outcome = Literal["applied", "rolled_back", "rejected"]


@dataclass(frozen=True)
class UpdateRequest:
    seq: int  # the command's
    version: str
    from_version: str
    staged: str  # the directory with manifest.json, signer.pem and the wheels
    requested: float

    @classmethod
    def from_json(cls, data: bytes) -> UpdateRequest:
        doc = _object(data, "request")
        try:
            return cls(
                seq=int(doc["seq"]),
                version=str(doc["version"]),
                from_version=str(doc["from_version"]),
                staged=str(doc["staged"]),
                requested=float(doc["requested"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(
                "request", _why(exc), "seq, version, from_version, staged, requested"
            ) from None


@dataclass(frozen=True)
class UpdateResult:
    seq: int
    version: str  # the version asked for
    outcome: Outcome
    running: str  # the version that runs now
    reason: str | None = None
    ts: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # install_s, switch_s, healthy_s, ...

    @classmethod
    def from_json(cls, data: bytes) -> UpdateResult:
        doc = _object(data, "result")
        try:
            outcome = doc["outcome"]
            if outcome not in ("applied", "rolled_back", "rejected"):
                raise ValueError(f"outcome {outcome!r}")
            return cls(
                seq=int(doc["seq"]),
                version=str(doc["version"]),
                outcome=outcome,
                running=str(doc["running"]),
                reason=None if doc.get("reason") is None else str(doc["reason"]),
                ts=float(doc.get("ts", 0.0)),
                timings={str(k): float(v) for k, v in dict(doc.get("timings") or {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError("result", _why(exc), "seq, version, outcome, running") from None


class UpdateFiles:
    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir) / UPDATE_DIR
        self.request = self.dir / "request.json"
        self.result = self.dir / "result.json"

    def staging(self, version: str) -> Path:
        return self.dir / version

    def write_request(self, request: UpdateRequest) -> None:
        write_json(self.request, asdict(request))

    def read_request(self) -> UpdateRequest | None:
        try:
            return UpdateRequest.from_json(self.request.read_bytes())
        except FileNotFoundError:
            return None

    def write_result(self, result: UpdateResult, *, owner: tuple[int, int] | None = None) -> None:
        write_json(self.result, asdict(result), owner=owner)

    def read_result(self) -> UpdateResult | None:
        try:
            return UpdateResult.from_json(self.result.read_bytes())
        except FileNotFoundError:
            return None

    def clean(self, keep: str | None = None) -> None:
        """Remove staged releases (all but ``keep``) and the request."""
        self.request.unlink(missing_ok=True)
        if not self.dir.is_dir():
            return
        for child in self.dir.iterdir():
            if child.is_dir() and not child.is_symlink() and child.name != keep:
                shutil.rmtree(child, ignore_errors=True)


def write_json(path: Path, doc: dict[str, Any], *, owner: tuple[int, int] | None = None) -> None:
    """``doc`` written atomically (:func:`models.manifest.write_atomic`: a link an unprivileged
    user put at ``path`` is replaced, never followed)."""
    write_atomic(path, json.dumps(doc, sort_keys=True).encode(), owner=owner)


def open_regular(path: Path) -> BinaryIO | None:
    """``path`` opened for reading by root where the agent's user may have put anything: a
    symbolic link is not followed (``OSError`` ``ELOOP``), and a FIFO or a device is not read
    (``None``; a FIFO does not block the open either)."""
    f = os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb")
    if stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        return f
    f.close()
    return None


def _object(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(what, str(exc)[:60], "JSON") from None
    if not isinstance(doc, dict):
        raise ManifestError(what, type(doc).__name__, "a JSON object")
    return doc


def _why(exc: Exception) -> str:
    return f"no {exc}" if isinstance(exc, KeyError) else str(exc)
