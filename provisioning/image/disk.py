"""Writing a finished image to an SD card (``--write /dev/sdX``), with the refusals that
keep a typo from erasing a laptop's own disk: it must be a whole removable block device, and
neither it nor any of its partitions may be mounted. Only with an explicit confirmation."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from provisioning.errors import TargetError

_CHUNK = 4 * 1024 * 1024


def check_disk(
    device: Path, sys_block: Path = Path("/sys/block"), mounts: Path = Path("/proc/mounts")
) -> None:
    """Raise TargetError unless ``device`` is a removable, unmounted whole disk."""
    try:
        mode = os.stat(device).st_mode
    except OSError as exc:
        raise TargetError(f"--write {device}: {exc}") from exc
    if not stat.S_ISBLK(mode):
        raise TargetError(f"--write {device}: not a block device")
    name = Path(os.path.realpath(device)).name
    info = sys_block / name
    if not info.is_dir():
        raise TargetError(
            f"--write {device}: not a whole disk (write to the disk, not a partition)"
        )
    removable = (info / "removable").read_text().strip() if (info / "removable").exists() else "0"
    if removable != "1":
        raise TargetError(f"--write {device}: refusing a non-removable disk")
    parts = {name} | {p.name for p in info.iterdir() if p.name.startswith(name)}
    for line in mounts.read_text().splitlines():
        source = line.split(" ", 1)[0]
        if Path(source).name in parts:
            raise TargetError(f"--write {device}: {source} is mounted; unmount it first")


def write_image(image: Path, device: Path, confirmed: bool, **checks: Path) -> int:
    if not confirmed:
        raise TargetError(f"--write {device} erases that disk; add --yes-erase-disk to confirm")
    check_disk(device, **checks)
    written = 0
    with open(image, "rb") as src, open(device, "r+b", buffering=0) as dst:
        while chunk := src.read(_CHUNK):
            dst.write(chunk)
            written += len(chunk)
        os.fsync(dst.fileno())
    return written
