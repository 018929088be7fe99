"""Agent releases for the update tests: the board's wheelhouse with Orchard's wheel re-versioned.

``bump`` copies a wheelhouse and rewrites ``orchard_fl-<v>-py3-none-any.whl`` as another
version (its ``.dist-info`` directory, METADATA and a fresh RECORD with every file's sha256, as
pip checks it). ``broken=True`` makes a release whose ``orchard-agent version`` still runs but
whose agent fails at start (``agent/runner.py`` raises on import): it installs cleanly and
only the health check after the switch can catch it.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import zipfile
from pathlib import Path

BROKEN = b'raise RuntimeError("deliberately broken release: the agent cannot start")\n'


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def bump(wheelhouse: Path, dest: Path, version: str, *, broken: bool = False) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    own = next(wheelhouse.glob("orchard_fl-*-py3-none-any.whl"))
    old_version = own.name.split("-")[1]
    for item in wheelhouse.iterdir():
        if item != own and item.is_file():
            shutil.copy2(item, dest / item.name)
    old_info, new_info = f"orchard_fl-{old_version}.dist-info", f"orchard_fl-{version}.dist-info"
    members: dict[str, bytes] = {}
    with zipfile.ZipFile(own) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            name = info.filename.replace(old_info, new_info, 1)
            data = zf.read(info)
            if name == f"{new_info}/METADATA":
                data = data.replace(
                    f"\nVersion: {old_version}\n".encode(), f"\nVersion: {version}\n".encode(), 1
                )
            if broken and name == "agent/runner.py":
                data = BROKEN + data
            members[name] = data
    record = f"{new_info}/RECORD"
    members.pop(record, None)
    lines = [f"{n},{_record_hash(d)},{len(d)}" for n, d in members.items()] + [f"{record},,"]
    members[record] = ("\n".join(lines) + "\n").encode()
    out = dest / f"orchard_fl-{version}-py3-none-any.whl"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return dest
