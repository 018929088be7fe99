"""One plan, three targets: the files, modes, owners and enabled units a board should have.

``build_plan`` is pure: options + identity in, a ``Plan`` out. Targets (rootfs, ssh, image)
only decide how the plan's tree reaches the board.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from provisioning import paths, render
from provisioning.ca import DeviceIdentity
from provisioning.installer import install_script
from provisioning.options import DeviceSettings
from provisioning.units import BOARD_UNITS, read_unit


@dataclass(frozen=True)
class PlannedFile:
    path: str  # absolute path on the board
    data: bytes | None = None
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    source: Path | None = None  # large files (wheels) are read when applied
    secret: bool = False

    def content(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.source is not None
        return self.source.read_bytes()

    def sha256(self) -> str:
        return hashlib.sha256(self.content()).hexdigest()


@dataclass(frozen=True)
class Plan:
    device_id: str
    options: DeviceSettings
    files: tuple[PlannedFile, ...]
    # (unit, target): enabled as /etc/systemd/system/<target>.wants/<unit> -> the unit file
    enable: tuple[tuple[str, str], ...] = field(default=())

    def file(self, path: str) -> PlannedFile:
        for planned in self.files:
            if planned.path == path:
                return planned
        raise KeyError(path)

    def links(self) -> dict[str, str]:
        """Enable symlinks (path -> target), as ``systemctl enable`` creates them."""
        return {
            f"{paths.UNIT_DIR}/{target}.wants/{unit}": f"{paths.UNIT_DIR}/{unit}"
            for unit, target in self.enable
        }


ENABLE = (
    (paths.FIRSTBOOT_UNIT, "multi-user.target"),
    (paths.AGENT_UNIT, "multi-user.target"),
    (paths.TRAINER_SOCKET, "sockets.target"),
    (paths.UPDATE_PATH, "multi-user.target"),
    (paths.RECOVER_UNIT, "multi-user.target"),
)


def build_plan(opts: DeviceSettings, identity: DeviceIdentity | None) -> Plan:
    config = render.agent_config(opts, identity)
    files: list[PlannedFile] = [
        PlannedFile(
            paths.AGENT_TOML, render.toml_text(config), 0o640, "root", paths.USER, secret=True
        ),  # may hold the MQTT password
        PlannedFile(paths.DEVICE_JSON, render.device_json(opts, identity)),
        PlannedFile(paths.BUDGET_DROPIN, render.budget_dropin(config)),
        PlannedFile(f"{paths.UNIT_DIR}/{paths.FIRSTBOOT_UNIT}", render.FIRSTBOOT_UNIT.encode()),
        PlannedFile(paths.SYSUSERS, render.sysusers()),
        PlannedFile(
            paths.INSTALLER,
            install_script(
                opts.package,
                tuple(u for u, _ in ENABLE),
                from_index=opts.from_index,
                index_url=opts.index_url,
            ),
            0o755,
        ),
    ]
    files += [PlannedFile(f"{paths.UNIT_DIR}/{unit}", read_unit(unit)) for unit in BOARD_UNITS]
    if identity is not None:
        files.append(PlannedFile(paths.CA_PEM, identity.ca_pem))
        files.append(PlannedFile(paths.SUPERNODE_PUB, identity.supernode_public))
        files.append(
            PlannedFile(
                paths.SUPERNODE_KEY,
                identity.supernode_private,
                0o600,
                paths.USER,
                paths.USER,
                secret=True,
            )
        )
        if identity.mqtt_cert is not None and identity.mqtt_key is not None:
            files.append(PlannedFile(paths.MQTT_CERT, identity.mqtt_cert))
            files.append(
                PlannedFile(
                    paths.MQTT_KEY, identity.mqtt_key, 0o600, paths.USER, paths.USER, secret=True
                )
            )
    if opts.wheelhouse is not None:
        for wheel in sorted(opts.wheelhouse.glob("*.whl")):
            files.append(PlannedFile(f"{paths.WHEELHOUSE}/{wheel.name}", source=wheel))
        manifest = opts.wheelhouse / "wheelhouse.json"  # the target, for the installer's check
        if manifest.is_file():
            files.append(PlannedFile(f"{paths.WHEELHOUSE}/{manifest.name}", source=manifest))
    owned = [
        (f.path, f.mode, f.owner, f.group) for f in files if (f.owner, f.group) != ("root", "root")
    ]
    files.append(PlannedFile(paths.TMPFILES, render.tmpfiles(owned)))
    return Plan(opts.device_id, opts, tuple(files), ENABLE)
