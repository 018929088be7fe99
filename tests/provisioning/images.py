"""A small real Raspberry Pi OS-like image: MBR (sfdisk) + FAT32 bootfs (mkfs.vfat, mtools)
+ ext4 rootfs (mkfs.ext4), and independent readers (sfdisk --json, fatcat, fsck.fat)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

TOOLS = ("sfdisk", "mkfs.vfat", "mkfs.ext4", "mcopy", "fatcat", "fsck.fat")
MISSING = [tool for tool in TOOLS if shutil.which(tool) is None]
needs_tools = pytest.mark.skipif(bool(MISSING), reason=f"missing tools: {MISSING}")

MIB = 1024 * 1024
BOOT_START, BOOT_SIZE, ROOT_SIZE = 4 * MIB, 48 * MIB, 8 * MIB
CMDLINE = "console=serial0,115200 console=tty1 root=PARTUUID=1234abcd-02 rootfstype=ext4 rootwait\n"
ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


def _run(*argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=ENV, timeout=60)
    assert done.returncode == 0, f"{argv}: {done.stderr}"
    return done.stdout


def build_image(directory: Path, flavour: str = "bookworm") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    image = directory / f"raspios-{flavour}.img"
    with open(image, "wb") as handle:
        handle.truncate(BOOT_START + BOOT_SIZE + ROOT_SIZE)
    _run(
        "sfdisk",
        "--quiet",
        str(image),
        stdin=(
            "label: dos\nlabel-id: 0x1234abcd\n"
            f"start={BOOT_START // 512}, size={BOOT_SIZE // 512}, type=c\n"
            f"start={(BOOT_START + BOOT_SIZE) // 512}, type=83\n"
        ),
    )
    boot, root = directory / "boot.fat", directory / "root.ext4"
    _run("mkfs.vfat", "-F", "32", "-n", "BOOTFS", "-C", str(boot), str(BOOT_SIZE // 1024))
    seed = {"cmdline.txt": CMDLINE, "config.txt": "dtparam=i2c_arm=on\n"}
    if flavour == "trixie":
        seed |= {
            "user-data": "#cloud-config\n",
            "meta-data": "instance-id: rpios\n",
            "network-config": "network:\n  version: 2\n",
        }
    for name, text in seed.items():
        src = directory / f"seed-{name}"
        src.write_text(text)
        _run("mcopy", "-i", str(boot), str(src), f"::/{name}")
    with open(root, "wb") as handle:
        handle.truncate(ROOT_SIZE)
    _run("mkfs.ext4", "-q", "-L", "rootfs", str(root))
    with open(image, "r+b") as out:
        out.seek(BOOT_START)
        out.write(boot.read_bytes())
        out.seek(BOOT_START + BOOT_SIZE)
        out.write(root.read_bytes())
    return image


def partitions(image: Path) -> list[dict[str, object]]:
    table = json.loads(_run("sfdisk", "--json", str(image)))["partitiontable"]
    return list(table["partitions"])


def _fatcat(image: Path, *args: str) -> bytes:
    done = subprocess.run(
        ["fatcat", str(image), "-O", str(BOOT_START), *args], capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def fat_read(image: Path, path: str) -> bytes | None:
    """Read a file from the boot partition with fatcat (not mtools, which wrote it)."""
    folder, _, name = path.rpartition("/")
    listing = _fatcat(image, "-l", folder or "/").decode(errors="replace")
    names = set()
    for line in listing.splitlines():
        match = re.match(r"f \S+ \S+\s+(\S+)(?: \((\S+)\))?", line)
        if match:
            names.update(n.lower() for n in match.groups() if n)
    if name.lower() not in names:
        return None
    return _fatcat(image, "-r", path)


def fat_check(image: Path, directory: Path) -> str:
    """fsck.fat -n on the boot partition extracted from the image: the FAT is consistent."""
    boot = directory / "check.fat"
    with open(image, "rb") as handle:
        handle.seek(BOOT_START)
        boot.write_bytes(handle.read(BOOT_SIZE))
    return _run("fsck.fat", "-n", str(boot))


def root_bytes(image: Path) -> bytes:
    with open(image, "rb") as handle:
        handle.seek(BOOT_START + BOOT_SIZE)
        return handle.read(ROOT_SIZE)
