"""rootfs mode: every file, mode, owner intent and enabled unit; idempotent; no leaked secret."""

from __future__ import annotations

import stat
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.config import from_mapping
from provisioning import paths
from provisioning.ca import FleetCA
from provisioning.errors import InvalidOption, TargetError
from provisioning.options import DeviceSettings
from provisioning.plan import build_plan
from provisioning.targets import get
from provisioning.units import unit_dir

EXPECTED = {  # path: (mode, owner, group)
    paths.AGENT_TOML: (0o640, "root", "orchard"),
    paths.DEVICE_JSON: (0o644, "root", "root"),
    paths.CA_PEM: (0o644, "root", "root"),
    paths.MQTT_CERT: (0o644, "root", "root"),
    paths.MQTT_KEY: (0o600, "orchard", "orchard"),
    paths.SUPERNODE_KEY: (0o600, "orchard", "orchard"),
    paths.SUPERNODE_PUB: (0o644, "root", "root"),
    paths.BUDGET_DROPIN: (0o644, "root", "root"),
    paths.SYSUSERS: (0o644, "root", "root"),
    paths.TMPFILES: (0o644, "root", "root"),
    paths.INSTALLER: (0o755, "root", "root"),
    "/etc/systemd/system/orchard-agent.service": (0o644, "root", "root"),
    "/etc/systemd/system/orchard-trainer.socket": (0o644, "root", "root"),
    "/etc/systemd/system/orchard-trainer.service": (0o644, "root", "root"),
    "/etc/systemd/system/orchard-firstboot.service": (0o644, "root", "root"),
    "/etc/systemd/system/orchard-update.path": (0o644, "root", "root"),
    "/etc/systemd/system/orchard-update.service": (0o644, "root", "root"),
    "/etc/systemd/system/orchard-update-recover.service": (0o644, "root", "root"),
    f"{paths.WHEELHOUSE}/orchard_fl-0.0.1-py3-none-any.whl": (0o644, "root", "root"),
}
UNITS = "/etc/systemd/system"
LINKS = {
    f"{UNITS}/multi-user.target.wants/orchard-agent.service": f"{UNITS}/orchard-agent.service",
    f"{UNITS}/multi-user.target.wants/orchard-firstboot.service": (
        f"{UNITS}/orchard-firstboot.service"
    ),
    f"{UNITS}/sockets.target.wants/orchard-trainer.socket": f"{UNITS}/orchard-trainer.socket",
    f"{UNITS}/multi-user.target.wants/orchard-update.path": f"{UNITS}/orchard-update.path",
    f"{UNITS}/multi-user.target.wants/orchard-update-recover.service": (
        f"{UNITS}/orchard-update-recover.service"
    ),
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "etc").mkdir(parents=True)
    return tmp_path / "root"


def test_rootfs_writes_the_whole_plan(
    root: Path, fleet_ca: FleetCA, make_options: Callable[..., DeviceSettings]
) -> None:
    opts = make_options()
    identity = fleet_ca.issue(opts.device_id)
    report = get("rootfs")(root=root).apply(build_plan(opts, identity))
    assert sorted(report.changed) == sorted([*EXPECTED, *LINKS])
    files = {
        "/" + str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()
    }
    assert files == set(EXPECTED) | set(LINKS)
    for path, (mode, _, _) in EXPECTED.items():
        assert stat.S_IMODE((root / path.lstrip("/")).stat().st_mode) == mode, path
    assert stat.S_IMODE((root / "etc/orchard/keys").stat().st_mode) == 0o750
    for link, target in LINKS.items():
        assert (root / link.lstrip("/")).readlink() == Path(target)
    # Owners other than root are applied on the board by tmpfiles.d (the user is made there).
    tmpfiles = (root / paths.TMPFILES.lstrip("/")).read_text().splitlines()
    for path, (mode, owner, group) in EXPECTED.items():
        line = f"z {path} {mode:04o} {owner} {group} -"
        assert (line in tmpfiles) == ((owner, group) != ("root", "root")), path
    # Content: the key material and units are the real ones.
    assert (root / paths.SUPERNODE_KEY.lstrip("/")).read_bytes() == identity.supernode_private
    assert (root / paths.MQTT_KEY.lstrip("/")).read_bytes() == identity.mqtt_key
    unit = root / "etc/systemd/system/orchard-agent.service"
    assert unit.read_bytes() == (unit_dir() / "orchard-agent.service").read_bytes()
    budget = (root / paths.BUDGET_DROPIN.lstrip("/")).read_text()
    assert "MemoryMax=512M" in budget and "CPUQuota=75%" in budget and "Nice=12" in budget
    assert "u orchard" in (root / paths.SYSUSERS.lstrip("/")).read_text()


def test_agent_toml_is_valid_and_points_at_the_identity(
    root: Path, fleet_ca: FleetCA, make_options: Callable[..., DeviceSettings]
) -> None:
    opts = make_options()
    get("rootfs")(root=root).apply(build_plan(opts, fleet_ca.issue(opts.device_id)))
    data = tomllib.loads((root / paths.AGENT_TOML.lstrip("/")).read_text())
    assert data["federation"] == {
        "enabled": True,
        "superlink": "coord.example:9092",
        "insecure": False,
        "trainer_launcher": "systemd",
        "trainer_socket": "/run/orchard/trainer.sock",
        "root_certificates": paths.CA_PEM,
        "auth_private_key": paths.SUPERNODE_KEY,
        "auth_public_key": paths.SUPERNODE_PUB,
    }
    assert data["mqtt"] == {
        "host": "coord.example",
        "port": 8883,
        "tls_ca": paths.CA_PEM,
        "tls_cert": paths.MQTT_CERT,
        "tls_key": paths.MQTT_KEY,
    }
    # Delivered models must be signed by a certificate the fleet CA issued.
    assert data["models"] == {"trust_ca": paths.CA_PEM}
    config = from_mapping(data)
    assert config.models.trust_ca == Path(paths.CA_PEM) and config.models.require_signed
    assert config.federation.enabled and config.federation.auth_private_key is not None
    assert config.device_id == "kitchen-pi" and config.training.memory_mb == 512
    assert [s.name for s in config.sensors] == ["room"]


def test_second_run_changes_nothing_and_repairs_drift(
    root: Path, fleet_ca: FleetCA, make_options: Callable[..., DeviceSettings]
) -> None:
    opts = make_options()
    target = get("rootfs")(root=root)
    target.apply(build_plan(opts, fleet_ca.issue(opts.device_id)))
    again = target.apply(build_plan(opts, fleet_ca.issue(opts.device_id)))
    assert again.changed == [] and "nothing changed" in again.summary()
    key = root / paths.SUPERNODE_KEY.lstrip("/")
    key.chmod(0o644)
    (root / "etc/systemd/system/orchard-trainer.socket").write_text("tampered")
    repaired = target.apply(build_plan(opts, fleet_ca.issue(opts.device_id)))
    assert sorted(repaired.changed) == [
        paths.SUPERNODE_KEY,
        "/etc/systemd/system/orchard-trainer.socket",
    ]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_no_secret_in_a_world_readable_file(
    root: Path, fleet_ca: FleetCA, make_options: Callable[..., DeviceSettings]
) -> None:
    opts = make_options(mqtt="mqtt://coord.example")  # password credentials in agent.toml
    identity = fleet_ca.issue(opts.device_id, mqtt="password")
    get("rootfs")(root=root).apply(build_plan(opts, identity))
    assert identity.mqtt_password is not None
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_mode & stat.S_IROTH:
            text = path.read_bytes()
            assert b"PRIVATE KEY" not in text, path
            assert identity.mqtt_password.encode() not in text, path
    assert identity.mqtt_password in (root / paths.AGENT_TOML.lstrip("/")).read_text()


def test_plan_without_ca_and_bad_inputs(
    root: Path, make_options: Callable[..., DeviceSettings]
) -> None:
    opts = make_options(coordinator=None, mqtt=None)
    report = get("rootfs")(root=root).apply(build_plan(opts, None))
    assert paths.SUPERNODE_KEY not in report.changed
    # Without an identity there is no CA on the board to check model signatures against.
    assert "models" not in tomllib.loads((root / paths.AGENT_TOML.lstrip("/")).read_text())
    with pytest.raises(TargetError, match="does not look like a root"):
        get("rootfs")(root=root / "nope").apply(build_plan(opts, None))
    with pytest.raises(InvalidOption, match=r"training.*memory_mb"):
        build_plan(make_options(base_config={"training": {"memory_mb": 1}}), None)
    with pytest.raises(
        InvalidOption, match=r"target: expected one of \['image', 'rootfs', 'ssh'\]"
    ):
        get("floppy")
