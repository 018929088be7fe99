"""The emulated board: ``qemu-system-aarch64 -M virt -cpu cortex-a72`` (a Pi 4's core, TCG).

:class:`Board` plays the Raspberry Pi firmware: before every boot it reads ``kernel8.img``,
``initramfs8`` and the first line of ``cmdline.txt`` from the disk's FAT partition and boots
them (``-kernel``/``-initrd``/``-append``). QEMU runs with ``-no-reboot``, so a guest reboot
ends the QEMU process and the next :meth:`Board.boot` reads the FAT partition again: what
the first boot wrote there (``firstrun.sh`` removing its ``systemd.run=`` hook) decides the
next boot, exactly as on a Pi.

Networking is QEMU user mode with ``restrict=on`` (the guest reaches nothing but the
explicit forwards) and only forwards that end on the host's 127.0.0.1: ``hostfwd`` from
127.0.0.1 to the board's HTTP port, ``guestfwd`` from a 10.0.2.x address on the board's
network to a 127.0.0.1 port (the host's Mosquitto, the SuperLink). :func:`netdev` refuses
anything else. A board without network gets no NIC at all.

The serial console goes to ``console-<n>.log`` (kernel, systemd and, through the base
image's journald setting, the journal), the guest agent socket to ``qga-<n>.sock``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.board.qga import GuestAgent

QEMU = shutil.which("qemu-system-aarch64") or "/usr/bin/qemu-system-aarch64"
CONNECTOR = Path(__file__).with_name("connector.py")
# A 1 GB Raspberry Pi 4; two vCPUs because this host has two cores (a Pi 4 has four).
MEMORY_MB = 1024
CPUS = 2


class BoardError(RuntimeError):
    pass


@dataclass(frozen=True)
class GuestForward:
    """Board connections to ``guest_ip:guest_port`` reach ``127.0.0.1:host_port`` on the host."""

    guest_ip: str
    guest_port: int
    host_port: int


@dataclass(frozen=True)
class Network:
    hostfwd: tuple[tuple[int, int], ...] = ()  # (127.0.0.1 port on the host, board port)
    guestfwd: tuple[GuestForward, ...] = ()
    # "chardev": guestfwd=...-tcp:127.0.0.1:PORT (one host connection for QEMU's lifetime);
    # "cmd": guestfwd=...-cmd:<python> connector.py 127.0.0.1 PORT, one per board connection.
    connector: str = field(default_factory=lambda: os.environ.get("ORCHARD_BOARD_CONNECTOR", "cmd"))


_HOSTFWD = re.compile(r"tcp:127\.0\.0\.1:\d{1,5}-:\d{1,5}")
_GUESTFWD = re.compile(
    r"tcp:10\.0\.2\.\d{1,3}:\d{1,5}-(tcp:127\.0\.0\.1:\d{1,5}|cmd:\S+ \S+ 127\.0\.0\.1 \d{1,5})"
)


def netdev(network: Network) -> str:
    """The ``-netdev`` value; raises unless every forward ends on 127.0.0.1 with restrict=on."""
    parts = ["user", "id=net0", "restrict=on", "ipv6=off"]
    for host_port, guest_port in network.hostfwd:
        parts.append(f"hostfwd=tcp:127.0.0.1:{host_port}-:{guest_port}")
    for fwd in network.guestfwd:
        if network.connector == "chardev":
            target = f"tcp:127.0.0.1:{fwd.host_port}"
        elif network.connector == "cmd":
            target = f"cmd:{sys.executable} {CONNECTOR} 127.0.0.1 {fwd.host_port}"
        else:
            raise BoardError(f"unknown connector {network.connector!r}")
        parts.append(f"guestfwd=tcp:{fwd.guest_ip}:{fwd.guest_port}-{target}")
    value = ",".join(parts)
    check_netdev(value)
    return value


def check_netdev(value: str) -> None:
    """The network rule: user mode, restrict=on, forwards only to/from the host's 127.0.0.1."""
    options = value.split(",")
    if options[0] != "user" or options.count("restrict=on") != 1 or "restrict=off" in options:
        raise BoardError(f"board networking must be user mode with restrict=on: {value}")
    for option in options[1:]:
        key, _, rest = option.partition("=")
        if key == "hostfwd" and not _HOSTFWD.fullmatch(rest):
            raise BoardError(f"hostfwd must listen on 127.0.0.1 only: {option}")
        if key == "guestfwd" and not _GUESTFWD.fullmatch(rest):
            raise BoardError(f"guestfwd must end on the host's 127.0.0.1: {option}")
        if key not in ("id", "restrict", "ipv6", "hostfwd", "guestfwd") and option != "user":
            raise BoardError(f"unexpected -netdev option {option}")


@dataclass(frozen=True)
class Firmware:
    kernel: Path
    initrd: Path
    cmdline: str


def fat_offset(image: Path) -> int:
    done = subprocess.run(
        ["sfdisk", "--json", str(image)], capture_output=True, text=True, check=True, timeout=60
    )
    table = json.loads(done.stdout)["partitiontable"]
    for part in table["partitions"]:
        if part["type"] in ("c", "b", "e", "6"):
            return int(part["start"]) * int(table.get("sectorsize", 512))
    raise BoardError(f"{image}: no FAT partition")


def fat_read(image: Path, name: str, dest: Path | None = None) -> bytes | None:
    """A file from the FAT partition (mtools, offline), or None when it is not there."""
    drive = f"{image}@@{fat_offset(image)}"
    env = {"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
    if dest is None:
        done = subprocess.run(
            ["mtype", "-i", drive, f"::/{name}"], capture_output=True, env=env, timeout=60
        )
        return done.stdout if done.returncode == 0 else None
    done = subprocess.run(
        ["mcopy", "-n", "-i", drive, f"::/{name}", str(dest)],
        capture_output=True,
        env=env,
        timeout=120,
    )
    return b"" if done.returncode == 0 else None


def firmware(image: Path, into: Path) -> Firmware:
    """What the Pi firmware would boot from this disk: kernel, initramfs, cmdline.txt."""
    into.mkdir(parents=True, exist_ok=True)
    kernel, initrd = into / "kernel8.img", into / "initramfs8"
    for name, dest in (("kernel8.img", kernel), ("initramfs8", initrd)):
        if fat_read(image, name, dest) is None:
            raise BoardError(f"{image}: no {name} on the boot partition")
    text = fat_read(image, "cmdline.txt")
    if text is None:
        raise BoardError(f"{image}: no cmdline.txt on the boot partition")
    lines = text.decode().splitlines()
    return Firmware(kernel, initrd, lines[0].strip() if lines else "")


@dataclass
class Boot:
    index: int
    argv: list[str]
    proc: subprocess.Popen[bytes]
    console: Path
    qga: GuestAgent
    cmdline: str
    started: float  # time.monotonic()
    started_wall: float
    ended: float | None = None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        """Wait for QEMU to end (a guest reboot or power-off, given -no-reboot)."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(
                f"boot {self.index} still running after {timeout:.0f} s; see {self.console}"
            ) from None
        self.ended = self.ended or time.monotonic()
        self.qga.close()
        return rc

    def console_text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.console_text().splitlines()[-lines:])


@dataclass
class Board:
    """One emulated board on one disk image; boots one at a time."""

    image: Path
    workdir: Path
    memory_mb: int = MEMORY_MB
    cpus: int = CPUS
    boots: list[Boot] = field(default_factory=list)

    @property
    def current(self) -> Boot | None:
        return self.boots[-1] if self.boots and self.boots[-1].alive else None

    def argv(self, fw: Firmware, network: Network | None, console: Path, qga: Path) -> list[str]:
        argv = [
            QEMU,
            "-M",
            "virt",
            "-cpu",
            "cortex-a72",
            "-accel",
            "tcg,thread=multi",
            "-smp",
            str(self.cpus),
            "-m",
            str(self.memory_mb),
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-kernel",
            str(fw.kernel),
            "-initrd",
            str(fw.initrd),
            "-append",
            fw.cmdline,
            "-drive",
            f"if=none,id=disk0,file={self.image},format=raw,cache=unsafe",
            "-device",
            "virtio-blk-pci,drive=disk0",
            "-device",
            "virtio-rng-pci",
            "-chardev",
            f"socket,id=qga0,path={qga},server=on,wait=off",
            "-device",
            "virtio-serial-pci,id=vser0",
            "-device",
            "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0",
            "-serial",
            f"file:{console}",
        ]
        if network is None:
            argv += ["-nic", "none"]
        else:
            argv += ["-netdev", netdev(network), "-device", "virtio-net-pci,netdev=net0,romfile="]
        return argv

    def boot(self, network: Network | None) -> Boot:
        if self.current is not None:
            raise BoardError("the board is already running")
        index = len(self.boots) + 1
        fw = firmware(self.image, self.workdir / f"firmware-{index}")
        console = self.workdir / f"console-{index}.log"
        qga = self.workdir / f"qga-{index}.sock"
        argv = self.argv(fw, network, console, qga)
        (self.workdir / f"qemu-{index}.argv").write_text(json.dumps(argv, indent=1) + "\n")
        log = open(self.workdir / f"qemu-{index}.log", "wb")  # noqa: SIM115 (lives with QEMU)
        started, wall = time.monotonic(), time.time()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        boot = Boot(index, argv, proc, console, GuestAgent(qga), fw.cmdline, started, wall)
        self.boots.append(boot)
        # QEMU creates the guest agent socket at start-up; fail fast on a bad command line.
        deadline = time.monotonic() + 30
        while not qga.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                qemu_log = (self.workdir / f"qemu-{index}.log").read_text(errors="replace")
                raise BoardError(f"QEMU did not start (rc {proc.poll()}): {qemu_log}")
            time.sleep(0.05)
        return boot

    def power_cut(self) -> None:
        """Pull the plug: SIGKILL QEMU (the guest's unflushed page cache is lost)."""
        boot = self.current
        if boot is not None:
            boot.proc.send_signal(signal.SIGKILL)
            boot.proc.wait(timeout=30)
            boot.ended = time.monotonic()
            boot.qga.close()

    def shutdown(self, timeout: float = 120.0) -> None:
        """Power off cleanly through the guest agent; pull the plug if that does not work."""
        boot = self.current
        if boot is None:
            return
        try:
            boot.qga.shutdown("powerdown")
        except Exception:  # any failure: cut the power instead
            self.power_cut()
            return
        try:
            boot.wait(timeout)
        except TimeoutError:
            self.power_cut()

    def kill(self) -> None:
        """End every QEMU this board started (teardown: always safe to call)."""
        for boot in self.boots:
            if boot.proc.poll() is None:
                boot.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    boot.proc.wait(timeout=30)
            boot.qga.close()
