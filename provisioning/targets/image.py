"""``image``: write the plan into a Raspberry Pi OS image's boot partition, offline, no root.

The boot partition gets ``orchard/payload.tar`` (the plan's tree, unpacked into the root and
deleted at first boot), the OS's own first-boot configuration (Bookworm ``firstrun.sh``,
Trixie cloud-init) and ``cgroup_enable=memory`` on ``cmdline.txt``. The input image is never
modified: the result goes to ``out`` (``.img`` or ``.img.xz``).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

from provisioning import tree
from provisioning.errors import ImageError, InvalidOption
from provisioning.image import files, firstboot
from provisioning.image.fatfs import BootFs, MtoolsFs
from provisioning.image.mbr import boot_partition
from provisioning.plan import Plan

logger = logging.getLogger(__name__)
FLAVOURS = ("auto", "bookworm", "trixie")


def detect_flavour(boot: BootFs) -> str:
    """Trixie images carry cloud-init seed files on the boot partition; Bookworm ones do not."""
    if any(boot.read(name) is not None for name in ("user-data", "meta-data", "network-config")):
        return "trixie"
    return "bookworm"


class ImageTarget:
    def __init__(
        self,
        image: Path,
        out: Path | None = None,
        flavour: str = "auto",
        fs_factory: Callable[[Path, int], BootFs] = MtoolsFs,
    ) -> None:
        if flavour not in FLAVOURS:
            raise InvalidOption("os", flavour, f"one of {list(FLAVOURS)}")
        self.image = Path(image)
        self.out = Path(out) if out else None
        self.flavour = flavour
        self.fs_factory = fs_factory

    def apply(self, plan: Plan) -> tree.ApplyReport:
        out = self.out or files.default_out(self.image, plan.device_id)
        if out.resolve() == self.image.resolve():
            raise ImageError(f"--out {out} is the input image; write to a new file")
        with tempfile.TemporaryDirectory(prefix="orchard-img-", dir=out.parent) as tmp:
            work = Path(tmp) / "work.img"
            files.unpack(self.image, work)
            written, flavour = self.edit(work, plan)
            files.pack(work, out)
        report = tree.ApplyReport(f"image {out}", written, 0)
        report.actions.append(f"first boot configured for Raspberry Pi OS {flavour}")
        logger.info("wrote %s (%s)", out, ", ".join(written))
        return report

    def edit(self, work: Path, plan: Plan) -> tuple[list[str], str]:
        """Edit the plain image ``work`` in place; returns (files written, OS flavour)."""
        part = boot_partition(work)
        boot = self.fs_factory(work, part.start)
        cmdline = boot.read("cmdline.txt")
        if cmdline is None:
            raise ImageError(f"{self.image}: the boot partition has no cmdline.txt")
        flavour = detect_flavour(boot) if self.flavour == "auto" else self.flavour
        payload = tree.tar_tree(plan)
        written = {firstboot.PAYLOAD: payload}
        if flavour == "bookworm":
            written["firstrun.sh"] = firstboot.firstrun_sh(plan.options)
        else:
            digest = hashlib.sha256(payload).hexdigest()
            written["user-data"] = firstboot.user_data(plan.options)
            written["network-config"] = firstboot.network_config(plan.options)
            written["meta-data"] = firstboot.meta_data(plan.options, digest)
        written["cmdline.txt"] = firstboot.edit_cmdline(
            cmdline.decode(), firstrun=flavour == "bookworm"
        ).encode()
        _check_room(boot, written)
        for path, data in written.items():
            boot.write(path, data)
        return [f"boot:/{path}" for path in written], flavour


MARGIN = 1024 * 1024  # FAT clusters and directory entries: never fill the partition to the byte


def _check_room(boot: BootFs, written: dict[str, bytes]) -> None:
    """Refuse before writing anything when the files do not fit on the boot partition."""
    needed = sum(len(data) - boot.size_of(path) for path, data in written.items())
    free = boot.free_bytes()
    if needed + MARGIN > free:
        payload = len(written[firstboot.PAYLOAD])
        raise ImageError(
            f"boot partition: expected room for the first-boot files ({needed / 2**20:.0f} MiB, "
            f"of which {firstboot.PAYLOAD} {payload / 2**20:.0f} MiB with the wheelhouse). "
            f"Received: {free / 2**20:.0f} MiB free. Provision with --package "
            "'orchard-fl[agent]' (no TensorFlow, ~90 MB), or use the rootfs or ssh target"
        )
