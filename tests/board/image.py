"""The base disk image: Debian Bookworm arm64 laid out like Raspberry Pi OS Lite.

Raspberry Pi OS cannot be downloaded here, and it is Debian Bookworm arm64 underneath, so the
board in a box boots the closest thing Debian's own archive can build:

- an MBR disk: partition 1 FAT32 ``bootfs`` (512 MiB from sector 8192, as Pi OS), partition 2
  ext4 ``rootfs``; ``/etc/fstab`` mounts them by ``PARTUUID=<disk id>-01/-02`` with the FAT
  partition at ``/boot/firmware``, exactly as Pi OS Bookworm does;
- on the FAT partition what the Pi firmware reads: ``cmdline.txt`` (``root=PARTUUID=...-02
  rootfstype=ext4 fsck.repair=yes rootwait``), ``config.txt``, the kernel as ``kernel8.img``
  and the initramfs as ``initramfs8`` (Debian's ``linux-image-arm64``: the Pi kernel only
  boots on Pi hardware). :mod:`tests.board.qemu` plays the firmware: it boots the kernel,
  initramfs and ``cmdline.txt`` it finds on the FAT partition, so edits made there
  (``systemd.run=`` first boot hook, ``cgroup_enable=memory``) really take effect;
- what Pi OS Lite has and Orchard relies on: systemd (+ ``systemd-timesyncd``), Python 3.11
  with ``python3-venv``, ``ca-certificates``, the ``i2c``/``gpio``/``spi`` groups, a
  ``raspberrypi`` hostname with its ``127.0.1.1`` line (first-boot scripts rename it);
- differences, each for the emulator: ``console=ttyAMA0`` (the virt machine's PL011; Pi OS
  says ``serial0``), ``systemd-networkd`` with DHCP on the virtio NIC (Pi OS uses
  NetworkManager), journald forwarding to that console (the serial log is the record of a
  failed boot) and ``qemu-guest-agent`` (how the host runs commands on the board without a
  network: ``systemctl``, ``systemd-analyze``, reading /proc).

It is built with ``mmdebstrap --mode=root`` (foreign-architecture maintainer scripts run
through qemu-user binfmt), then ``mkfs.ext4 -d``, ``mkfs.vfat`` + mtools and ``sfdisk``: no
loop mounts. The result is cached under ``~/.cache/orchard/board/`` keyed by a hash of the
recipe; builds take a lock so parallel test workers build it once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.board.disk import BOOT_START, MIB, DiskError, assemble

# Bumped whenever the build steps below change in a way the recipe fields do not show.
BUILD_VERSION = 1

# What Raspberry Pi OS Lite has that Orchard needs, plus the emulator's kernel and agent.
PACKAGES = (
    "linux-image-arm64",  # the kernel + initramfs (initramfs-tools), booted from the FAT copy
    "systemd",
    "systemd-sysv",
    "systemd-timesyncd",  # Pi OS Bookworm's time sync
    "udev",
    "dbus",
    "kmod",
    "iproute2",
    "procps",
    "sudo",
    "dosfstools",  # fsck.vfat for /boot/firmware (fstab pass 2)
    "e2fsprogs",
    "ca-certificates",
    "python3",
    "python3-venv",  # Pi OS Lite has it; the installer creates /opt/orchard/venv with it
    "tzdata",
    "qemu-guest-agent",  # emulator only: host -> board commands without a network
)


@dataclass(frozen=True)
class Recipe:
    """Everything the base image depends on; its hash names the cached image."""

    suite: str = "bookworm"
    arch: str = "arm64"
    variant: str = "important"  # Priority: important (what a "Lite" system is built from)
    mirrors: tuple[str, ...] = (
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    )
    packages: tuple[str, ...] = PACKAGES
    boot_mib: int = 512
    root_mib: int = 3072  # room for the agent's venv (~0.4 GB) or TensorFlow (~2 GB)
    hostname: str = "raspberrypi"
    build_version: int = BUILD_VERSION
    extra: tuple[str, ...] = field(default=())

    def key(self) -> str:
        hooks = [line for line in (ESSENTIAL + CUSTOMIZE).splitlines() if not line.startswith("#")]
        text = json.dumps(asdict(self), sort_keys=True) + "\n".join(hooks)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def disk_id(self) -> str:
        """The MBR disk identifier (8 hex digits): PARTUUIDs are ``<id>-01`` and ``<id>-02``."""
        return self.key()[:8]

    @property
    def size_bytes(self) -> int:
        return BOOT_START + (self.boot_mib + self.root_mib) * MIB


@dataclass(frozen=True)
class BaseImage:
    path: Path
    recipe: Recipe
    facts: dict[str, object]

    @property
    def build_seconds(self) -> float:
        return float(self.facts.get("build_seconds", 0.0))  # type: ignore[arg-type]


# mmdebstrap hooks (tests/board/hooks/): --essential-hook writes /etc/fstab before the other
# packages are configured, --customize-hook does the rest. The root file system is checked at
# every boot by systemd-fsck-root (the initramfs mounts it read-only; it carries no fsck,
# because initramfs-tools cannot tell the root's type inside the build chroot).
HOOKS = Path(__file__).with_name("hooks")
ESSENTIAL = (HOOKS / "essential.sh").read_text()
CUSTOMIZE = (HOOKS / "customize.sh").read_text()


CMDLINE = "console=ttyAMA0,115200 root=PARTUUID={id}-02 rootfstype=ext4 fsck.repair=yes rootwait\n"
CONFIG_TXT = """\
# The board in a box boots kernel8.img + initramfs8 + cmdline.txt from here with QEMU
# (tests/board/qemu.py), as the Pi firmware does from a Raspberry Pi OS boot partition.
arm_64bit=1
kernel=kernel8.img
initramfs initramfs8 followkernel
dtparam=i2c_arm=on
"""


class BuildError(RuntimeError):
    pass


def cache_dir() -> Path:
    if env := os.environ.get("ORCHARD_BOARD_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "orchard" / "board"


def missing_build_tools() -> list[str]:
    tools = ("mmdebstrap", "mkfs.ext4", "mkfs.vfat", "mcopy", "mmd", "sfdisk", "arch-test")
    missing = [t for t in tools if shutil.which(t) is None]
    if os.geteuid() != 0:
        missing.append("root (mmdebstrap --mode=root)")
    return missing


def arm64_runs() -> bool:
    """Foreign arm64 binaries run here (qemu-user binfmt), as mmdebstrap's scripts need."""
    if shutil.which("arch-test") is None:
        return False
    done = subprocess.run(["arch-test", "arm64"], capture_output=True, text=True, timeout=60)
    return done.returncode == 0


def cached(recipe: Recipe | None = None, directory: Path | None = None) -> BaseImage | None:
    recipe = recipe or Recipe()
    directory = directory or cache_dir()
    path = directory / f"base-{recipe.key()}.img"
    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file():
        return BaseImage(path, recipe, json.loads(meta.read_text()))
    return None


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure(
    recipe: Recipe | None = None, directory: Path | None = None, log: Path | None = None
) -> BaseImage:
    """The cached base image, built first if missing (one builder at a time)."""
    recipe = recipe or Recipe()
    directory = directory or cache_dir()
    with _lock(directory / f"base-{recipe.key()}.lock"):
        found = cached(recipe, directory)
        if found is not None:
            return found
        return build(recipe, directory, log)


def _run(argv: list[str], log: Path, timeout: float, **kwargs: object) -> None:
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        try:
            done = subprocess.run(
                argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, **kwargs
            )  # type: ignore[call-overload]
        except subprocess.TimeoutExpired as exc:
            raise BuildError(f"{argv[0]} took over {timeout:.0f} s; see {log}") from exc
    if done.returncode != 0:
        raise BuildError(f"{' '.join(argv[:3])} failed ({done.returncode}); see {log}")


def build(recipe: Recipe, directory: Path, log: Path | None = None) -> BaseImage:
    missing = missing_build_tools()
    if missing:
        raise BuildError(f"cannot build the base image, missing: {', '.join(missing)}")
    if not arm64_runs():
        raise BuildError(
            "arm64 binaries do not run here: mmdebstrap needs qemu-user-static with binfmt_misc "
            "(apt-get install qemu-user-static binfmt-support; mount binfmt_misc)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    key = recipe.key()
    log = log or directory / f"base-{key}.log"
    log.write_text(f"building base image {key}: {json.dumps(asdict(recipe))}\n")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="orchard-base-", dir=directory) as tmp:
        work = Path(tmp)
        rootfs = work / "rootfs"
        hooks = {}
        for name, text in (("essential", ESSENTIAL), ("customize", CUSTOMIZE)):
            hooks[name] = work / f"{name}.sh"
            hooks[name].write_text(
                text.replace("@ID@", recipe.disk_id).replace("@HOSTNAME@", recipe.hostname)
            )
        _run(
            [
                "mmdebstrap",
                "--mode=root",
                "--format=directory",
                f"--arch={recipe.arch}",
                f"--variant={recipe.variant}",
                "--components=main",
                f"--include={','.join(recipe.packages + recipe.extra)}",
                '--aptopt=Acquire::Retries "3"',
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-include=/usr/share/doc/*/copyright",
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                f'--essential-hook=sh {hooks["essential"]} "$1"',
                f'--customize-hook=sh {hooks["customize"]} "$1"',
                recipe.suite,
                str(rootfs),
                *recipe.mirrors,
            ],
            log,
            timeout=3600,
        )
        facts = _facts(rootfs)
        boot_dir = work / "boot"
        boot_dir.mkdir()
        kernel = _one(rootfs / "boot", "vmlinuz-")
        initrd = _one(rootfs / "boot", "initrd.img-")
        shutil.copyfile(kernel, boot_dir / "kernel8.img")
        shutil.copyfile(initrd, boot_dir / "initramfs8")
        (boot_dir / "cmdline.txt").write_text(CMDLINE.format(id=recipe.disk_id))
        (boot_dir / "config.txt").write_text(CONFIG_TXT)
        (boot_dir / "issue.txt").write_text(
            f"Orchard board-in-a-box base {key}: Debian {recipe.suite} {recipe.arch}\n"
        )
        root_img = work / "root.ext4"
        _run(
            [
                "mkfs.ext4",
                "-q",
                "-F",
                "-L",
                "rootfs",
                "-d",
                str(rootfs),
                str(root_img),
                f"{recipe.root_mib}M",
            ],
            log,
            timeout=1800,
        )
        shutil.rmtree(rootfs)
        boot_img = work / "boot.fat"
        _run(
            [
                "mkfs.vfat",
                "-F",
                "32",
                "-n",
                "BOOTFS",
                "-C",
                str(boot_img),
                str(recipe.boot_mib * 1024),
            ],
            log,
            timeout=300,
        )
        env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
        for item in sorted(boot_dir.iterdir()):
            _run(
                ["mcopy", "-i", str(boot_img), str(item), f"::/{item.name}"],
                log,
                timeout=300,
                env=env,
            )
        disk = work / "disk.img"
        try:
            assemble(
                disk, recipe.disk_id, recipe.boot_mib, recipe.size_bytes, boot_img, root_img, log
            )
        except DiskError as exc:
            raise BuildError(str(exc)) from exc
        facts.update(
            key=key,
            build_seconds=round(time.monotonic() - started, 1),
            built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            recipe=asdict(recipe),
            kernel=kernel.name,
            disk_id=recipe.disk_id,
        )
        final = directory / f"base-{key}.img"
        disk.replace(final)
        final.with_suffix(".json").write_text(json.dumps(facts, indent=2) + "\n")
    return BaseImage(final, recipe, facts)


def _one(directory: Path, prefix: str) -> Path:
    found = sorted(p for p in directory.iterdir() if p.name.startswith(prefix))
    if len(found) != 1:
        raise BuildError(f"expected one {prefix}* in {directory}, found {[p.name for p in found]}")
    return found[0]


def _facts(rootfs: Path) -> dict[str, object]:
    """Versions worth reporting: what the emulated board runs."""
    facts: dict[str, object] = {}
    status = rootfs / "var/lib/dpkg/status"
    versions: dict[str, str] = {}
    name = ""
    for line in status.read_text(errors="replace").splitlines():
        if line.startswith("Package: "):
            name = line.split(": ", 1)[1]
        elif line.startswith("Version: ") and name:
            versions[name] = line.split(": ", 1)[1]
    for package in ("systemd", "python3", "python3-venv", "linux-image-arm64", "libc6"):
        if package in versions:
            facts[f"version_{package}"] = versions[package]
    facts["packages"] = len(versions)
    return facts
