"""Shared steps of the board tests: the firstrun boot, the FAT partition after it, addresses."""

from __future__ import annotations

from pathlib import Path

from tests.board.qemu import Boot, GuestForward, Network, fat_read

MQTT_IP = "10.0.2.100"  # the laptop's broker, as the board sees it (guestfwd)
SUPERLINK_IP = "10.0.2.101"  # the laptop's Flower SuperLink, as the board sees it (guestfwd)
READINGS = {
    "temp_c": 22.4,
    "humidity_pct": 46,
    "pressure_hpa": 1015,
    "light_lux": 460,
    "co2_ppm": 900,
}
# Bounds for the emulated board on 2 x86 cores (measured: see docs/board.md).
FIRSTRUN_S = 20 * 60
INSTALL_READY_S = 60 * 60


def firstrun(boot: Boot) -> float:
    """Boot 1: firstrun.sh through systemd.run=, which reboots (QEMU ends: -no-reboot)."""
    try:
        rc = boot.wait(FIRSTRUN_S)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{boot.tail(80)}") from None
    assert rc == 0, boot.tail(80)
    console = boot.console_text()
    assert "reboot: Restarting system" in console, boot.tail(80)
    assert boot.ended is not None
    return boot.ended - boot.started


def after_firstrun(image: Path) -> str:
    """The FAT partition after the first boot: secrets and the hook gone, cgroup flags kept."""
    cmdline = (fat_read(image, "cmdline.txt") or b"").decode()
    assert "systemd.run" not in cmdline and "systemd.unit=" not in cmdline, cmdline
    assert "cgroup_enable=memory" in cmdline and "cgroup_memory=1" in cmdline, cmdline
    assert fat_read(image, "orchard/payload.tar") is None, "payload.tar left on the FAT partition"
    assert fat_read(image, "firstrun.sh") is None, "firstrun.sh left on the FAT partition"
    return cmdline


def laptop_network(http_port: int, mqtt_port: int, superlink_port: int) -> Network:
    """The board's NIC: its HTTP port on the host's 127.0.0.1:``http_port``, and the laptop's
    Mosquitto and SuperLink (on 127.0.0.1) at MQTT_IP:1883 and SUPERLINK_IP:9092."""
    return Network(
        hostfwd=((http_port, 8765),),
        guestfwd=(
            GuestForward(MQTT_IP, 1883, mqtt_port),
            GuestForward(SUPERLINK_IP, 9092, superlink_port),
        ),
    )
