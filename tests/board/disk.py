"""Disk image plumbing for the board in a box: MBR + partitions, sparse copies, a bigger card."""

from __future__ import annotations

import subprocess
from pathlib import Path

MIB = 1024 * 1024
SECTOR = 512
BOOT_START = 8192 * SECTOR  # Pi OS: bootfs starts at sector 8192 (4 MiB)


class DiskError(RuntimeError):
    pass


def assemble(
    disk: Path, disk_id: str, boot_mib: int, size: int, boot_img: Path, root_img: Path, log: Path
) -> None:
    """MBR (sfdisk) with the two partitions, their contents copied in sparsely."""
    with open(disk, "wb") as handle:
        handle.truncate(size)
    boot_sectors = boot_mib * MIB // SECTOR
    table = (
        f"label: dos\nlabel-id: 0x{disk_id}\nunit: sectors\n"
        f"start={BOOT_START // SECTOR}, size={boot_sectors}, type=c\n"
        f"start={BOOT_START // SECTOR + boot_sectors}, type=83\n"
    )
    with open(log, "ab") as out:
        done = subprocess.run(
            ["sfdisk", "--quiet", str(disk)],
            input=table.encode(),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=60,
        )
    if done.returncode != 0:
        raise DiskError(f"sfdisk failed; see {log}")
    _copy_sparse(boot_img, disk, BOOT_START)
    _copy_sparse(root_img, disk, BOOT_START + boot_mib * MIB)


def _copy_sparse(src: Path, dst: Path, offset: int, chunk: int = MIB) -> None:
    zero = bytes(chunk)
    with open(src, "rb") as fin, open(dst, "r+b") as fout:
        position = 0
        while block := fin.read(chunk):
            if block != zero[: len(block)]:
                fout.seek(offset + position)
                fout.write(block)
            position += len(block)


def grow_root(disk: Path, size: int) -> None:
    """Make the disk ``size`` bytes (sparse) and partition 2 (the root) fill it: a bigger card.

    The file system inside is grown by the board itself at boot (board-grow-rootfs.service).
    """
    with open(disk, "r+b") as handle:
        handle.truncate(size)
    done = subprocess.run(
        ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", "-N", "2", str(disk)],
        input=b", +\n",
        capture_output=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise DiskError(f"sfdisk could not grow partition 2: {done.stderr.decode()}")


def copy_image(src: Path, dst: Path) -> None:
    """A sparse copy of a disk image (the provisioned board's disk, from the cached base)."""
    with open(dst, "wb") as handle:
        handle.truncate(src.stat().st_size)
    _copy_sparse(src, dst, 0)
