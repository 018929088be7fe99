"""Check a wheelhouse offline: would ``pip install --no-index`` succeed on the target board?

``verify`` needs no network. It checks that Orchard's own wheel is there, that every wheel's
tags install on the target (``cp311``/``abi3``/``none`` with ``manylinux_2_17..2_36`` or
``linux_`` for the board's machine, or ``any``) and that every requirement, read from each
wheel's ``METADATA`` with markers evaluated for the *target* (not this laptop) and extras
applied, is met by a wheel present, transitively. A ``wheelhouse.json`` manifest, when present,
must be for the same target and its sha256 sums must match.
"""

from __future__ import annotations

import email.parser
import hashlib
import json
import logging
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from functools import cached_property
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from provisioning.errors import InvalidOption, WheelhouseError

logger = logging.getLogger(__name__)
PROJECT = "orchard-fl"
MANIFEST = "wheelhouse.json"
PLATFORMS = ("aarch64", "armv7l", "x86_64")
GLIBC = (2, 36)  # Raspberry Pi OS Bookworm (Trixie has 2.41): wheels up to manylinux_2_36


@dataclass(frozen=True)
class Target:
    """The board's interpreter and machine (``cp311 manylinux aarch64``)."""

    python: str = "3.11"
    platform: str = "aarch64"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"3\.\d{1,2}", self.python):
            raise InvalidOption("python", self.python, "a CPython version such as 3.11")
        if self.platform not in PLATFORMS:
            raise InvalidOption("platform", self.platform, f"one of {list(PLATFORMS)}")

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")

    def __str__(self) -> str:
        return f"{self.abi} manylinux {self.platform}"

    def platform_tags(self) -> list[str]:
        """Newest first, as pip prefers them."""
        arch = self.platform
        many = [f"manylinux_{GLIBC[0]}_{minor}_{arch}" for minor in range(GLIBC[1], 16, -1)]
        return [*many, f"manylinux2014_{arch}", f"linux_{arch}"]

    @cached_property
    def tags(self) -> frozenset[Tag]:
        version = tuple(int(part) for part in self.python.split("."))
        plats = self.platform_tags()
        return frozenset(
            [*cpython_tags(version, [self.abi], plats), *compatible_tags(version, self.abi, plats)]
        )

    def environment(self, extra: str = "") -> dict[str, str]:
        """PEP 508 marker values of the board, not of the machine running this code."""
        full = f"{self.python}.0"
        return {
            "implementation_name": "cpython",
            "implementation_version": full,
            "os_name": "posix",
            "platform_machine": self.platform,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Linux",
            "platform_version": "",
            "python_full_version": full,
            "python_version": self.python,
            "sys_platform": "linux",
            "extra": extra,
        }

    def wants(self, req: Requirement, extras: Iterable[str] = ()) -> bool:
        if req.marker is None:
            return True
        return any(req.marker.evaluate(self.environment(e)) for e in ("", *extras))


@dataclass(frozen=True)
class Wheel:
    path: Path
    name: str  # canonical
    version: Version
    tags: frozenset[Tag]

    @classmethod
    def from_path(cls, path: Path) -> Wheel:
        try:
            name, version, _, tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename as exc:
            raise WheelhouseError(
                f"wheelhouse: {path.name} is not a wheel file name ({exc})"
            ) from None
        return cls(path, str(name), version, frozenset(tags))

    def metadata(self) -> Message:
        try:
            with zipfile.ZipFile(self.path) as zf:
                names = [n for n in zf.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
                if len(names) != 1:
                    raise WheelhouseError(
                        f"wheelhouse: {self.path.name} has no .dist-info/METADATA"
                    )
                text = zf.read(names[0]).decode("utf-8")
        except (OSError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
            raise WheelhouseError(
                f"wheelhouse: {self.path.name} is not a readable wheel ({exc})"
            ) from None
        return email.parser.Parser().parsestr(text)

    def requires(self) -> list[Requirement]:
        try:
            return [Requirement(line) for line in self.metadata().get_all("Requires-Dist") or []]
        except InvalidRequirement as exc:
            raise WheelhouseError(
                f"wheelhouse: {self.path.name}: bad Requires-Dist ({exc})"
            ) from None

    def installs_on(self, target: Target) -> bool:
        return bool(self.tags & target.tags)

    def why_not(self, target: Target, req: Requirement | None = None) -> str | None:
        """Why this wheel cannot serve ``req`` on ``target``; None when it can."""
        if not self.installs_on(target):
            return "another platform or Python"
        if req is not None and not req.specifier.contains(self.version, prereleases=True):
            return f"version {self.version}"
        needs = self.metadata().get("Requires-Python")
        try:
            fits = not needs or SpecifierSet(needs).contains(f"{target.python}.0", prereleases=True)
        except InvalidSpecifier:
            fits = True  # pip ignores an invalid Requires-Python too
        return None if fits else f"Requires-Python {needs}"


@dataclass(frozen=True)
class Checked:
    """What ``verify`` found: the wheels the install uses, in the order they were reached."""

    directory: Path
    target: Target
    project: Wheel
    used: tuple[Wheel, ...]
    unused: tuple[Wheel, ...]

    def size(self) -> int:
        return sum(w.path.stat().st_size for w in (*self.used, *self.unused))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(directory: Path) -> dict[str, Any] | None:
    path = Path(directory) / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("wheels"), dict):
            return data
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        pass
    raise WheelhouseError(
        f"wheelhouse: {path} is damaged; rebuild with orchard-provision wheelhouse"
    )


def verify(
    directory: Path,
    python: str = "3.11",
    platform: str = "aarch64",
    extras: Iterable[str] = ("agent", "train"),
) -> Checked:
    """Raise :class:`WheelhouseError` naming the package unless the wheelhouse is complete."""
    directory, target, extras = Path(directory), Target(python, platform), tuple(extras)
    if not directory.is_dir():
        raise WheelhouseError(
            f"wheelhouse: expected a directory of .whl files. Received: {directory}"
        )
    _check_manifest(directory, target, extras)
    wheels: dict[str, list[Wheel]] = {}
    for path in sorted(directory.glob("*.whl")):
        wheel = Wheel.from_path(path)
        wheels.setdefault(wheel.name, []).append(wheel)
    top = Requirement(f"{PROJECT}[{','.join(extras)}]" if extras else PROJECT)
    project = _pick(top, "Orchard itself", wheels, target, directory)
    provided = {canonicalize_name(e) for e in project.metadata().get_all("Provides-Extra") or []}
    for extra in extras:
        if canonicalize_name(extra) not in provided:
            raise WheelhouseError(
                f"wheelhouse: {project.path.name} has no extra {extra!r}. "
                f"Expected one of {sorted(provided)}"
            )
    used: dict[Path, Wheel] = {project.path: project}
    seen: set[tuple[str, frozenset[str]]] = set()
    queue = [(project, frozenset(extras))]
    while queue:
        wheel, wanted = queue.pop(0)
        if (wheel.name, wanted) in seen:
            continue
        seen.add((wheel.name, wanted))
        for req in wheel.requires():
            if not target.wants(req, wanted):
                continue
            parent = f"{wheel.name}[{','.join(sorted(wanted))}]" if wanted else wheel.name
            dep = _pick(req, f"needed by {parent}", wheels, target, directory)
            used.setdefault(dep.path, dep)
            queue.append((dep, frozenset(req.extras)))
    unused = [w for group in wheels.values() for w in group if w.path not in used]
    for wheel in unused:
        if not wheel.installs_on(target):
            tags = ", ".join(sorted(str(t) for t in wheel.tags))
            raise WheelhouseError(
                f"wheelhouse: {wheel.path.name} does not install on {target}. Received: tags {tags}"
            )
    logger.info("wheelhouse %s: %d wheels verified for %s", directory, len(used), target)
    return Checked(directory, target, project, tuple(used.values()), tuple(unused))


def _pick(
    req: Requirement, why: str, wheels: dict[str, list[Wheel]], target: Target, where: Path
) -> Wheel:
    candidates = wheels.get(canonicalize_name(req.name), [])
    fitting = [w for w in candidates if w.why_not(target, req) is None]
    if fitting:
        return max(fitting, key=lambda w: w.version)
    shown = f"{req.name}{'[' + ','.join(sorted(req.extras)) + ']' if req.extras else ''}"
    received = ", ".join(f"{w.path.name} ({w.why_not(target, req)})" for w in candidates)
    raise WheelhouseError(
        f"wheelhouse: no wheel for '{shown}{req.specifier}' ({why}) for {target}. "
        f"Received: {received or f'no {req.name} wheel in {where}'}"
    )


def _check_manifest(directory: Path, target: Target, extras: tuple[str, ...]) -> None:
    manifest = read_manifest(directory)
    if manifest is None:
        return
    built = manifest.get("target") or {}
    if (built.get("python"), built.get("platform")) != (target.python, target.platform):
        raise WheelhouseError(
            f"wheelhouse: {directory} was built for Python {built.get('python')} "
            f"{built.get('platform')} ({MANIFEST}). Expected: Python {target.python} "
            f"{target.platform}; build one with orchard-provision wheelhouse "
            f"--python {target.python} --platform {target.platform}"
        )
    built_for = set(manifest.get("extras") or [])
    if not set(extras) <= built_for:
        raise WheelhouseError(
            f"wheelhouse: {directory} was built for {manifest.get('requirement')} "
            f"({MANIFEST}). Expected: extras {sorted(extras)}; build one with "
            f"orchard-provision wheelhouse --extras {','.join(extras)}"
        )
    for name, digest in manifest["wheels"].items():
        path = directory / name
        if not path.is_file():
            raise WheelhouseError(f"wheelhouse: {name} is listed in {MANIFEST} but missing")
        if sha256(path) != digest:
            raise WheelhouseError(
                f"wheelhouse: {name} changed since the wheelhouse was built. "
                f"Expected: sha256 {digest[:16]}... from {MANIFEST}"
            )
