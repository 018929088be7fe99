"""Image files in and out: plain ``.img`` or ``.img.xz`` (streamed, never all in memory)."""

from __future__ import annotations

import lzma
import shutil
from pathlib import Path

from provisioning.errors import ImageError

_CHUNK = 4 * 1024 * 1024


def is_xz(path: Path) -> bool:
    return path.name.endswith(".xz")


def unpack(source: Path, work: Path) -> None:
    """Copy ``source`` (``.img`` or ``.img.xz``) to the plain image ``work``."""
    try:
        if is_xz(source):
            with lzma.open(source, "rb") as src, open(work, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
        else:
            shutil.copyfile(source, work)
    except (OSError, lzma.LZMAError) as exc:
        raise ImageError(f"cannot read image {source}: {exc}") from exc


def pack(work: Path, out: Path) -> None:
    """Move the edited image to ``out``, compressing when ``out`` ends in ``.xz``."""
    try:
        if is_xz(out):
            tmp = out.with_name(out.name + ".part")
            with open(work, "rb") as src, lzma.open(tmp, "wb", preset=6) as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
            tmp.replace(out)
            work.unlink()
        else:
            work.replace(out)
    except (OSError, lzma.LZMAError) as exc:
        raise ImageError(f"cannot write image {out}: {exc}") from exc


def default_out(image: Path, device_id: str) -> Path:
    name = image.name
    for suffix in (".img.xz", ".img", ".xz"):
        if name.endswith(suffix):
            return image.with_name(f"{name[: -len(suffix)]}-{device_id}{suffix}")
    return image.with_name(f"{name}-{device_id}.img")
