"""The MBR partition table of a disk image (Raspberry Pi OS uses MBR, not GPT)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from provisioning.errors import ImageError

SECTOR = 512
FAT_TYPES = {0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E}
LINUX = 0x83
GPT_PROTECTIVE = 0xEE


@dataclass(frozen=True)
class Partition:
    number: int
    type_id: int
    start: int  # byte offset
    size: int  # bytes

    @property
    def is_fat(self) -> bool:
        return self.type_id in FAT_TYPES


def read_partitions(image: Path) -> list[Partition]:
    try:
        with open(image, "rb") as handle:
            sector = handle.read(SECTOR)
            handle.seek(0, 2)
            length = handle.tell()
    except OSError as exc:
        raise ImageError(f"cannot read {image}: {exc}") from exc
    if len(sector) < SECTOR or sector[510:512] != b"\x55\xaa":
        raise ImageError(f"{image} has no MBR partition table (expected a Raspberry Pi OS .img)")
    parts = []
    for index in range(4):
        entry = sector[446 + 16 * index : 446 + 16 * (index + 1)]
        type_id = entry[4]
        first, count = struct.unpack_from("<II", entry, 8)
        if type_id == 0 or count == 0:
            continue
        if type_id == GPT_PROTECTIVE:
            raise ImageError(f"{image} uses GPT; Raspberry Pi OS images use MBR")
        part = Partition(index + 1, type_id, first * SECTOR, count * SECTOR)
        if part.start + part.size > length:
            raise ImageError(f"{image}: partition {part.number} ends past the end of the file")
        parts.append(part)
    return parts


def boot_partition(image: Path) -> Partition:
    """The first FAT partition (Raspberry Pi OS: ``bootfs``, mounted at /boot/firmware)."""
    for part in read_partitions(image):
        if part.is_fat:
            return part
    raise ImageError(f"{image} has no FAT boot partition")
