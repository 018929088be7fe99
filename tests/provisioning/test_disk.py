"""``--write /dev/sdX`` refuses anything but an unmounted removable whole disk.

The sysfs tree and the mount table are faked (hardware edge); the refusals never write.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provisioning.errors import TargetError
from provisioning.image.disk import check_disk, write_image

BLOCK = next(
    (Path("/dev") / n for n in ("loop0", "loop1") if Path("/dev", n).is_block_device()), None
)


def fake_sys(tmp_path: Path, name: str, removable: str) -> Path:
    disk = tmp_path / "sys" / name
    (disk / f"{name}p1").mkdir(parents=True)
    (disk / "removable").write_text(removable + "\n")
    return tmp_path / "sys"


def test_requires_confirmation_and_a_block_device(tmp_path: Path) -> None:
    image = tmp_path / "a.img"
    image.write_bytes(b"x")
    with pytest.raises(TargetError, match="add --yes-erase-disk"):
        write_image(image, tmp_path / "disk", confirmed=False)
    regular = tmp_path / "disk"
    regular.write_bytes(b"keep")
    with pytest.raises(TargetError, match="not a block device"):
        write_image(image, regular, confirmed=True)
    assert regular.read_bytes() == b"keep"


@pytest.mark.skipif(BLOCK is None, reason="no loop block device to point at")
def test_refuses_fixed_and_mounted_disks(tmp_path: Path) -> None:
    assert BLOCK is not None
    name = Path(os.path.realpath(BLOCK)).name
    mounts = tmp_path / "mounts"
    mounts.write_text("")
    with pytest.raises(TargetError, match="non-removable"):
        check_disk(BLOCK, fake_sys(tmp_path / "a", name, "0"), mounts)
    mounts.write_text(f"/dev/{name}p1 /media/pi/bootfs vfat rw 0 0\n")
    with pytest.raises(TargetError, match=f"/dev/{name}p1 is mounted"):
        check_disk(BLOCK, fake_sys(tmp_path / "b", name, "1"), mounts)
    with pytest.raises(TargetError, match="not a whole disk"):
        check_disk(BLOCK, tmp_path / "empty-sys", mounts)
    mounts.write_text("")
    check_disk(BLOCK, fake_sys(tmp_path / "c", name, "1"), mounts)  # removable, unmounted: ok
