#!/bin/sh
# mmdebstrap --customize-hook for the board-in-a-box base image (tests/board/image.py).
# $1: the root directory; `chroot "$1" ...` runs arm64 binaries through qemu-user binfmt.
set -eu
R="$1"
echo @HOSTNAME@ > "$R/etc/hostname"
cat > "$R/etc/hosts" <<EOF
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters

127.0.1.1		@HOSTNAME@
EOF
# Raspberry Pi OS's hardware groups (raspberrypi-sys-mods creates them there).
for group in gpio i2c spi; do
    chroot "$R" getent group "$group" >/dev/null || chroot "$R" groupadd --system "$group"
done
# The virtio NIC gets DHCP from QEMU's user network (Pi OS: NetworkManager does this).
mkdir -p "$R/etc/systemd/network"
printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n' \
    > "$R/etc/systemd/network/20-wired.network"
chroot "$R" systemctl enable systemd-networkd.service systemd-timesyncd.service
# Raspberry Pi OS grows its root file system to fill the card at first boot; here a oneshot
# does it at every boot (resize2fs says "Nothing to do" once it fits its partition).
cat > "$R/etc/systemd/system/board-grow-rootfs.service" <<EOF
[Unit]
Description=Grow the root file system to fill its partition (as Raspberry Pi OS does)
DefaultDependencies=no
After=systemd-remount-fs.service
Before=local-fs.target shutdown.target
Conflicts=shutdown.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'resize2fs "\$\$(findmnt -no SOURCE /)"'

[Install]
WantedBy=local-fs.target
EOF
chroot "$R" systemctl enable board-grow-rootfs.service
# The serial console is the record of a boot: send the journal there too.
mkdir -p "$R/etc/systemd/journald.conf.d"
printf '[Journal]\nForwardToConsole=yes\nTTYPath=/dev/ttyAMA0\nMaxLevelConsole=info\n' \
    > "$R/etc/systemd/journald.conf.d/10-board-console.conf"
# ...but not the guest agent's line per command the host runs.
mkdir -p "$R/etc/systemd/system/qemu-guest-agent.service.d"
printf '[Service]\nLogLevelMax=notice\n' \
    > "$R/etc/systemd/system/qemu-guest-agent.service.d/10-quiet.conf"
# No trace of the build host; like a fresh Pi OS image, no machine id yet.
: > "$R/etc/resolv.conf"
: > "$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id"
rm -rf "$R/var/lib/apt/lists/"* "$R/var/cache/apt/"*.bin
