"""First-boot configuration Raspberry Pi OS itself reads from the boot partition.

Bookworm: ``firstrun.sh`` run once through ``systemd.run=`` on ``cmdline.txt`` (what Raspberry
Pi Imager writes). Trixie: cloud-init NoCloud ``user-data``, ``network-config``, ``meta-data``.
Both unpack ``orchard/payload.tar`` (the plan's tree) into the root and delete it from the
world-readable FAT partition, so no secret stays there after the first boot.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex

from provisioning.options import DeviceSettings, Wifi

PAYLOAD = "orchard/payload.tar"
CGROUP_FLAGS = ("cgroup_enable=memory", "cgroup_memory=1")
FIRSTRUN_FLAGS = (
    "systemd.run=/boot/firmware/firstrun.sh",
    "systemd.run_success_action=reboot",
    "systemd.unit=kernel-command-line.target",
)
_OURS = re.compile(r"^(systemd\.run=|systemd\.run_success_action=|systemd\.unit=)")


def wpa_psk(wifi: Wifi) -> str:
    """The 256-bit PSK (64 hex digits): the passphrase itself never goes onto the card."""
    if re.fullmatch(r"[0-9a-fA-F]{64}", wifi.psk):
        return wifi.psk.lower()
    return hashlib.pbkdf2_hmac("sha1", wifi.psk.encode(), wifi.ssid.encode(), 4096, 32).hex()


def edit_cmdline(text: str, firstrun: bool) -> str:
    """``cmdline.txt`` is one line; add the cgroup flags (and the firstrun hook) once."""
    tokens = [t for t in text.split() if not _OURS.match(t)]
    for flag in CGROUP_FLAGS:
        if flag not in tokens:
            tokens.append(flag)
    if firstrun:
        tokens += FIRSTRUN_FLAGS
    return " ".join(tokens) + "\n"


def firstrun_sh(opts: DeviceSettings) -> bytes:
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        "# Written by orchard-provision; run once at first boot via systemd.run=, then removed.",
        "set +e",
        'BOOT=/boot/firmware; [ -d "$BOOT/orchard" ] || BOOT=/boot',
        "CUSTOM=/usr/lib/raspberrypi-sys-mods/imager_custom",
        "",
        f"NEW_HOSTNAME={q(opts.hostname)}",
        'if [ -x "$CUSTOM" ]; then "$CUSTOM" set_hostname "$NEW_HOSTNAME"; else',
        '    OLD=$(tr -d " \\t\\n\\r" < /etc/hostname)',
        '    echo "$NEW_HOSTNAME" > /etc/hostname',
        '    sed -i "s/127.0.1.1.*$OLD/127.0.1.1\\t$NEW_HOSTNAME/g" /etc/hosts',
        "fi",
        "",
        f"FIRSTUSER={q(opts.user)}",
        f"PWHASH={q(opts.password_hash or '!')}",
        "if [ -x /usr/lib/userconf-pi/userconf ]; then",
        '    /usr/lib/userconf-pi/userconf "$FIRSTUSER" "$PWHASH"',
        'elif ! id "$FIRSTUSER" >/dev/null 2>&1; then',
        '    useradd -m -G sudo,i2c,adm -s /bin/bash "$FIRSTUSER"',
        '    usermod -p "$PWHASH" "$FIRSTUSER"',
        "fi",
    ]
    if opts.ssh_keys:
        keys = " ".join(q(k) for k in opts.ssh_keys)
        lines += [
            'if [ -x "$CUSTOM" ]; then',
            f'    "$CUSTOM" enable_ssh -k {keys}',
            "else",
            '    HOME_DIR=$(getent passwd "$FIRSTUSER" | cut -d: -f6)',
            '    install -o "$FIRSTUSER" -m 700 -d "$HOME_DIR/.ssh"',
            f'    printf "%s\\n" {keys} > "$HOME_DIR/.ssh/authorized_keys"',
            '    chown "$FIRSTUSER:" "$HOME_DIR/.ssh/authorized_keys"',
            '    chmod 600 "$HOME_DIR/.ssh/authorized_keys"',
            "    systemctl enable ssh",
            "fi",
        ]
    if opts.wifi is not None:
        lines += [
            'if [ -x "$CUSTOM" ]; then',
            f'    "$CUSTOM" set_wlan {q(opts.wifi.ssid)} {wpa_psk(opts.wifi)} {opts.wifi.country}',
            "fi",
        ]
    if opts.timezone:
        lines += [f'if [ -x "$CUSTOM" ]; then "$CUSTOM" set_timezone {q(opts.timezone)}; fi']
    lines += [
        "",
        "# Orchard: unpack the plan's tree, then take the secrets off the FAT partition.",
        f'tar -xpf "$BOOT/{PAYLOAD}" -C / --no-same-owner && rm -f "$BOOT/{PAYLOAD}"',
        "",
        'rm -f "$BOOT/firstrun.sh"',
        "sed -i 's| systemd.run.*||g' \"$BOOT/cmdline.txt\"",
        "exit 0",
    ]
    return ("\n".join(lines) + "\n").encode()


def _yaml(value: object) -> str:
    return json.dumps(value)  # JSON scalars and lists are valid YAML flow values


def user_data(opts: DeviceSettings) -> bytes:
    groups = "users,adm,dialout,audio,netdev,video,plugdev,input,gpio,spi,i2c,render,sudo"
    lines = [
        "#cloud-config",
        "# Written by orchard-provision.",
        f"hostname: {_yaml(opts.hostname)}",
        "manage_etc_hosts: true",
    ]
    if opts.timezone:
        lines.append(f"timezone: {_yaml(opts.timezone)}")
    lines += [
        "users:",
        f"  - name: {_yaml(opts.user)}",
        f"    groups: {_yaml(groups)}",
        "    shell: /bin/bash",
        "    sudo: ALL=(ALL) NOPASSWD:ALL",
    ]
    if opts.password_hash:
        lines += ["    lock_passwd: false", f"    passwd: {_yaml(opts.password_hash)}"]
    else:
        lines.append("    lock_passwd: true")
    if opts.ssh_keys:
        lines.append("    ssh_authorized_keys:")
        lines += [f"      - {_yaml(key)}" for key in opts.ssh_keys]
    lines += [
        "enable_ssh: true",
        "ssh_pwauth: false",
        "runcmd:",
        "  - [sh, -c, "
        + _yaml(
            f"tar -xpf /boot/firmware/{PAYLOAD} -C / --no-same-owner"
            f" && rm -f /boot/firmware/{PAYLOAD}"
        )
        + "]",
        "  - [systemctl, daemon-reload]",
        "  - [systemctl, start, --no-block, orchard-firstboot.service, orchard-agent.service,"
        " orchard-trainer.socket]",
    ]
    return ("\n".join(lines) + "\n").encode()


def network_config(opts: DeviceSettings) -> bytes:
    lines = ["network:", "  version: 2"]
    if opts.wifi is not None:
        lines += [
            "  wifis:",
            "    wlan0:",
            "      dhcp4: true",
            "      optional: true",
            f"      regulatory-domain: {_yaml(opts.wifi.country)}",
            "      access-points:",
            f"        {_yaml(opts.wifi.ssid)}:",
            f"          password: {_yaml(wpa_psk(opts.wifi))}",
        ]
    return ("\n".join(lines) + "\n").encode()


def meta_data(opts: DeviceSettings, digest: str) -> bytes:
    # A new instance-id makes cloud-init run again, so it changes with what we wrote.
    return f"instance-id: orchard-{opts.device_id}-{digest[:12]}\n".encode()
