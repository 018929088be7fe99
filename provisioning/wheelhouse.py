"""A wheelhouse: Orchard's own wheel plus every dependency, as wheels for the board.

``build`` makes one (see :mod:`provisioning.wheelfetch` for how the target is resolved and
downloaded) and writes ``wheelhouse.json``: the target, the requirement, each wheel's sha256.
``ensure`` keeps one per target in the cache (``~/.cache/orchard/wheelhouse/3.11-aarch64-
agent+train``) and rebuilds only what changed. The board installs from it with ``pip install
--no-index --find-links``; :func:`provisioning.wheelcheck.verify` checks it offline first.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from provisioning import wheelfetch
from provisioning.errors import WheelhouseError
from provisioning.wheelcheck import MANIFEST, Target, Wheel, read_manifest, sha256, verify

logger = logging.getLogger(__name__)
Progress = Callable[[str], None]
_RESOLVE_ROUNDS = 10


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "orchard" / "wheelhouse"


def build(
    out: Path,
    python: str = "3.11",
    platform: str = "aarch64",
    extras: Iterable[str] = ("agent", "train"),
    *,
    project: Path | None = None,
    project_wheel: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Build the wheelhouse in ``out`` (replacing one built before); returns its manifest.

    Nothing in ``out`` changes unless the whole build and its verification succeed.
    """
    out, target, extras = Path(out), Target(python, platform), tuple(extras)
    say = progress or logger.info
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise WheelhouseError(
            f"wheelhouse: --out {out} holds other files. Expected: a new or empty directory, "
            "or a wheelhouse built before"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as tmp:
        stage = Path(tmp) / "wheels"
        stage.mkdir()
        if project_wheel is None:
            say("building the orchard-fl wheel")
            root = project or wheelfetch.project_root()
            project_wheel = wheelfetch.build_project_wheel(root, Path(tmp) / "project")
        own = Path(shutil.copy2(project_wheel, stage))
        pins = _fetch(own, target, extras, stage, say)
        _drop_unpinned(stage, own, pins)
        manifest = _write_manifest(stage, own, target, extras)
        verify(stage, python, platform, extras)
        try:
            if out.exists():
                out.rename(Path(tmp) / "old")  # removed with the temporary directory
            stage.rename(out)
        except OSError as exc:
            msg = f"wheelhouse: cannot move the new wheelhouse to {out}: {exc}"
            raise WheelhouseError(msg) from None
    size = sum(p.stat().st_size for p in out.glob("*.whl"))
    say(f"wheelhouse {out}: {len(manifest['wheels'])} wheels, {size / 1e6:.1f} MB for {target}")
    return manifest


def _fetch(
    own: Path, target: Target, extras: tuple[str, ...], stage: Path, say: Progress
) -> dict[str, str]:
    """Resolve and download; a pin whose release excludes the target's Python is resolved
    again without that release (uv checks only the lower bound of Requires-Python)."""
    exclude: list[str] = []
    for _ in range(_RESOLVE_ROUNDS):
        say(f"resolving {wheelfetch.requirement(extras)} for {target}")
        pins = wheelfetch.resolve(own, target, extras, exclude)
        say(f"downloading {len(pins)} wheels for {target}")
        wrong_python = wheelfetch.download(pins, target, stage)
        if not wrong_python:
            return pins
        logger.info("releases without Python %s: %s", target.python, wrong_python)
        exclude += [pin.replace("==", "!=") for pin in wrong_python]
    raise WheelhouseError(
        f"wheelhouse: no release of {', '.join(exclude)} supports Python {target.python}"
    )


def _drop_unpinned(stage: Path, own: Path, pins: dict[str, str]) -> None:
    """Remove wheels an earlier resolution round fetched that the final one does not use."""
    keep = {(canonicalize_name(p.partition("==")[0]), p.partition("==")[2]) for p in pins}
    for path in stage.glob("*.whl"):
        wheel = Wheel.from_path(path)
        if path != own and (wheel.name, str(wheel.version)) not in keep:
            path.unlink()


def _write_manifest(
    directory: Path, own: Path, target: Target, extras: tuple[str, ...]
) -> dict[str, Any]:
    wheel = Wheel.from_path(own)
    manifest = {
        "format": 1,
        "target": {
            "python": target.python,
            "platform": target.platform,
            "tags": f"{target.abi} {target.platform_tags()[0]}",
        },
        "extras": list(extras),
        "requirement": f"{wheelfetch.requirement(extras)}=={wheel.version}",
        "project": {
            "file": own.name,
            "sha256": sha256(own),
            "requires_dist": [str(r) for r in wheel.requires()],
        },
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "wheels": {p.name: sha256(p) for p in sorted(directory.glob("*.whl"))},
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def ensure(
    python: str = "3.11",
    platform: str = "aarch64",
    extras: Iterable[str] = ("agent", "train"),
    *,
    cache: Path | None = None,
    project: Path | None = None,
    progress: Progress | None = None,
) -> Path:
    """A verified wheelhouse for this target in the cache, built only when it must be.

    Reused as it is when its orchard-fl wheel has the sha256 of a fresh build of the source;
    when only Orchard's code changed (same Requires-Dist), only that wheel is swapped.
    """
    target, extras = Target(python, platform), tuple(extras)
    say = progress or logger.info
    directory = (cache or cache_root()) / f"{python}-{platform}-{'+'.join(extras) or 'base'}"
    with tempfile.TemporaryDirectory(prefix="orchard-wheel-") as tmp:
        root = project or wheelfetch.project_root()
        wheel = wheelfetch.build_project_wheel(root, Path(tmp))
        manifest = _reusable(directory, target, extras)
        if manifest is not None:
            old = manifest["project"]
            if old["sha256"] == sha256(wheel):
                say(f"reusing wheelhouse {directory}")
                return directory
            if old["requires_dist"] == [str(r) for r in Wheel.from_path(wheel).requires()]:
                (directory / old["file"]).unlink(missing_ok=True)
                own = Path(shutil.copy2(wheel, directory))
                _write_manifest(directory, own, target, extras)
                verify(directory, python, platform, extras)
                say(f"reusing wheelhouse {directory} with a new {own.name}")
                return directory
        build(directory, python, platform, extras, project_wheel=wheel, progress=progress)
    return directory


def _reusable(directory: Path, target: Target, extras: tuple[str, ...]) -> dict[str, Any] | None:
    if not (directory / MANIFEST).exists():
        return None
    try:
        verify(directory, target.python, target.platform, extras)
        return read_manifest(directory)
    except WheelhouseError as exc:
        logger.warning("rebuilding the cached wheelhouse: %s", exc)
        return None
