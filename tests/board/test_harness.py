"""The board-in-a-box harness itself, without booting anything (fast; runs everywhere)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.board import disk, image, qemu
from tests.provisioning.images import build_image, needs_tools


def test_netdev_is_restricted_user_mode_with_forwards_on_loopback_only() -> None:
    forward = qemu.GuestForward("10.0.2.100", 1883, 11883)
    network = qemu.Network(hostfwd=((18765, 8765),), guestfwd=(forward,), connector="chardev")
    value = qemu.netdev(network)
    assert value == (
        "user,id=net0,restrict=on,ipv6=off,hostfwd=tcp:127.0.0.1:18765-:8765,"
        "guestfwd=tcp:10.0.2.100:1883-tcp:127.0.0.1:11883"
    )
    cmd = qemu.netdev(qemu.Network(guestfwd=(qemu.GuestForward("10.0.2.101", 9092, 19092),)))
    assert cmd.endswith(f"-cmd:{sys.executable} {qemu.CONNECTOR} 127.0.0.1 19092")


@pytest.mark.parametrize(
    "value",
    [
        "user,id=net0,hostfwd=tcp:127.0.0.1:1-:2",  # no restrict=on
        "user,id=net0,restrict=off,hostfwd=tcp:127.0.0.1:1-:2",
        "user,id=net0,restrict=on,restrict=off",
        "user,id=net0,restrict=on,hostfwd=tcp::8080-:8765",  # every host address
        "user,id=net0,restrict=on,hostfwd=tcp:0.0.0.0:8080-:8765",
        "user,id=net0,restrict=on,guestfwd=tcp:10.0.2.100:80-tcp:203.0.113.5:80",
        "user,id=net0,restrict=on,guestfwd=tcp:10.0.2.100:80-cmd:nc example.org 80",
        "user,id=net0,restrict=on,dns=8.8.8.8",
        "tap,id=net0,restrict=on",
    ],
)
def test_netdev_rule_refuses_anything_else(value: str) -> None:
    with pytest.raises(qemu.BoardError):
        qemu.check_netdev(value)


def test_board_argv_uses_the_firmware_files_and_no_nic_when_offline(tmp_path: Path) -> None:
    board = qemu.Board(tmp_path / "board.img", tmp_path)
    fw = qemu.Firmware(tmp_path / "k", tmp_path / "i", "root=PARTUUID=abcd-02 rootwait")
    argv = board.argv(fw, None, tmp_path / "console.log", tmp_path / "qga.sock")
    assert argv[argv.index("-append") + 1] == "root=PARTUUID=abcd-02 rootwait"
    assert argv[argv.index("-cpu") + 1] == "cortex-a72" and "-no-reboot" in argv
    assert argv[argv.index("-m") + 1] == "1024"
    assert argv[argv.index("-nic") + 1] == "none" and "-netdev" not in argv
    assert "kvm" not in " ".join(argv)


def test_connector_relays_both_ways_to_loopback() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def echo() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data.upper())

    threading.Thread(target=echo, daemon=True).start()
    board_side, qemu_side = socket.socketpair()
    proc = subprocess.Popen(
        [sys.executable, str(qemu.CONNECTOR), "127.0.0.1", str(port)],
        stdin=qemu_side,
        stdout=qemu_side,
    )
    qemu_side.close()
    board_side.sendall(b"connect\n")
    board_side.settimeout(10)
    assert board_side.recv(1024) == b"CONNECT\n"
    board_side.shutdown(socket.SHUT_WR)
    assert board_side.recv(1024) == b""
    assert proc.wait(timeout=10) == 0
    server.close()


def test_connector_refuses_other_hosts() -> None:
    done = subprocess.run(
        [sys.executable, str(qemu.CONNECTOR), "10.0.0.1", "80"], capture_output=True, timeout=30
    )
    assert done.returncode == 2


@needs_tools
def test_firmware_reads_kernel_initramfs_and_first_cmdline_line(tmp_path: Path) -> None:
    img = build_image(tmp_path / "img")
    env = {"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
    offset = qemu.fat_offset(img)
    for name in ("kernel8.img", "initramfs8"):
        src = tmp_path / name
        src.write_bytes(name.encode() * 100)
        subprocess.run(
            ["mcopy", "-i", f"{img}@@{offset}", str(src), f"::/{name}"],
            env=env,
            check=True,
            timeout=60,
        )
    fw = qemu.firmware(img, tmp_path / "fw")
    assert fw.cmdline.startswith("console=serial0,115200") and "\n" not in fw.cmdline
    assert fw.kernel.read_bytes() == b"kernel8.img" * 100
    assert qemu.fat_read(img, "missing.txt") is None


def test_recipe_key_names_the_cached_image() -> None:
    recipe = image.Recipe()
    assert recipe.key() == image.Recipe().key()
    assert image.Recipe(root_mib=4096).key() != recipe.key()
    assert len(recipe.disk_id) == 8 and int(recipe.disk_id, 16) >= 0
    assert "python3-venv" in recipe.packages and "linux-image-arm64" in recipe.packages


@needs_tools
def test_grow_root_makes_partition_two_fill_a_bigger_card(tmp_path: Path) -> None:
    img = build_image(tmp_path / "img")
    before = {p["node"][-1]: p for p in _partitions(img)}
    disk.grow_root(img, 128 * disk.MIB)
    after = {p["node"][-1]: p for p in _partitions(img)}
    assert img.stat().st_size == 128 * disk.MIB
    assert after["1"] == before["1"] and after["2"]["start"] == before["2"]["start"]
    assert (after["2"]["start"] + after["2"]["size"]) * 512 == 128 * disk.MIB


def _partitions(img: Path) -> list[dict[str, int | str]]:
    from tests.provisioning.images import partitions

    return partitions(img)  # type: ignore[return-value]
