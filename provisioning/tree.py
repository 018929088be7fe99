"""The plan as a file tree: write it under a root, pack it as a tar, compare it with a state.

A *state* maps each path to ``"F <mode> <sha256>"`` (a file), ``"L <target>"`` (a symlink) or
``"M"`` (missing); equal states mean a target has nothing to do.
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from provisioning.plan import Plan

_PRIVATE_DIR_MODE = 0o750


@dataclass
class ApplyReport:
    target: str
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0
    actions: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if not self.changed:
            return f"{self.target}: up to date, nothing changed ({self.unchanged} entries checked)"
        lines = [f"{self.target}: {len(self.changed)} changed, {self.unchanged} unchanged"]
        lines += [f"  wrote {path}" for path in self.changed]
        lines += [f"  ran {action}" for action in self.actions]
        return "\n".join(lines)


def expected_state(plan: Plan) -> dict[str, str]:
    state = {f.path: f"F {f.mode:o} {f.sha256()}" for f in plan.files}
    state.update({path: f"L {target}" for path, target in plan.links().items()})
    return state


def local_state(root: Path, entries: list[str]) -> dict[str, str]:
    import hashlib

    state: dict[str, str] = {}
    for entry in entries:
        path = root / entry.lstrip("/")
        if path.is_symlink():
            state[entry] = f"L {os.readlink(path)}"
        elif path.is_file():
            mode = path.stat().st_mode & 0o7777
            state[entry] = f"F {mode:o} {hashlib.sha256(path.read_bytes()).hexdigest()}"
        else:
            state[entry] = "M"
    return state


def changed_entries(plan: Plan, state: dict[str, str]) -> list[str]:
    want = expected_state(plan)
    return [path for path, line in want.items() if state.get(path) != line]


def private_dirs(plan: Plan) -> set[str]:
    """Directories holding owner-only files (keys): created 0750, not world-readable."""
    return {f.path.rsplit("/", 1)[0] for f in plan.files if f.mode & 0o077 == 0}


def _mkdirs(root: Path, entry: str, private: set[str]) -> None:
    parent = entry.rsplit("/", 1)[0]
    target = root / parent.lstrip("/")
    if not target.is_dir():
        target.mkdir(parents=True, mode=0o755)
    if parent in private:
        os.chmod(target, _PRIVATE_DIR_MODE)


def write_tree(plan: Plan, root: Path, only: list[str] | None = None) -> list[str]:
    """Write the plan's entries (or ``only`` those) under ``root``, atomically per file."""
    wanted = set(only) if only is not None else None
    private = private_dirs(plan)
    written: list[str] = []
    for planned in plan.files:
        if wanted is not None and planned.path not in wanted:
            continue
        path = root / planned.path.lstrip("/")
        _mkdirs(root, planned.path, private)
        tmp = path.with_name(f".{path.name}.orchard-tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, planned.mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(planned.content())
        os.chmod(tmp, planned.mode)
        os.replace(tmp, path)
        written.append(planned.path)
    for link, target in plan.links().items():
        if wanted is not None and link not in wanted:
            continue
        path = root / link.lstrip("/")
        _mkdirs(root, link, private)
        if path.is_symlink() or path.exists():
            path.unlink()
        path.symlink_to(target)
        written.append(link)
    return written


def tar_tree(plan: Plan, only: list[str] | None = None) -> bytes:
    """The plan's entries as an uncompressed tar (root-owned; tmpfiles.d sets owners at boot)."""
    wanted = set(only) if only is not None else None
    private = private_dirs(plan)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for planned in plan.files:
            if wanted is not None and planned.path not in wanted:
                continue
            _add_dirs(tar, planned.path, dirs, private)
            data = planned.content()
            info = tarfile.TarInfo(planned.path.lstrip("/"))
            info.size, info.mode = len(data), planned.mode
            tar.addfile(info, io.BytesIO(data))
        for link, target in plan.links().items():
            if wanted is not None and link not in wanted:
                continue
            _add_dirs(tar, link, dirs, private)
            info = tarfile.TarInfo(link.lstrip("/"))
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


def _add_dirs(tar: tarfile.TarFile, path: str, seen: set[str], private: set[str]) -> None:
    """Add only the private parent directory; tar creates the others with default modes."""
    parent = path.rsplit("/", 1)[0]
    if parent in private and parent not in seen:
        seen.add(parent)
        info = tarfile.TarInfo(parent.lstrip("/"))
        info.type, info.mode = tarfile.DIRTYPE, _PRIVATE_DIR_MODE
        tar.addfile(info)
