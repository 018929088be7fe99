"""image mode on a real two-partition image, read back with independent tools."""

from __future__ import annotations

import io
import lzma
import re
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from provisioning import paths, tree
from provisioning.ca import FleetCA
from provisioning.errors import ImageError
from provisioning.image import firstboot
from provisioning.image.fatfs import MtoolsFs
from provisioning.image.mbr import boot_partition
from provisioning.options import DeviceSettings
from provisioning.plan import Plan, build_plan
from provisioning.targets import get
from tests.provisioning.conftest import SSH_KEY
from tests.provisioning.images import (
    BOOT_SIZE,
    BOOT_START,
    CMDLINE,
    MIB,
    build_image,
    fat_check,
    fat_read,
    needs_tools,
    partitions,
    root_bytes,
)

pytestmark = [needs_tools, pytest.mark.slow]


def assert_payload_matches(payload: bytes, plan: Plan) -> None:
    with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
        members = {"/" + m.name: m for m in tar.getmembers()}
        for planned in plan.files:
            member = members[planned.path]
            assert member.mode == planned.mode, planned.path
            extracted = tar.extractfile(member)
            assert extracted is not None and extracted.read() == planned.content(), planned.path
        for link, target in plan.links().items():
            assert members[link].issym() and members[link].linkname == target
        if any(f.path.startswith("/etc/orchard/keys/") for f in plan.files):
            assert members["/etc/orchard/keys"].mode == 0o750


def test_bookworm_image(
    tmp_path: Path, fleet_ca: FleetCA, make_options: Callable[..., DeviceSettings]
) -> None:
    image = build_image(tmp_path / "in")
    before = image.read_bytes()
    opts = make_options(timezone="Europe/Berlin")
    plan = build_plan(opts, fleet_ca.issue(opts.device_id))
    out = tmp_path / "kitchen.img"
    report = get("image")(image=image, out=out).apply(plan)
    assert "bookworm" in report.summary()
    assert image.read_bytes() == before  # the input image is never modified

    parts = partitions(out)
    second = (BOOT_START + BOOT_SIZE) // 512
    assert [(p["start"], p["type"]) for p in parts] == [(BOOT_START // 512, "c"), (second, "83")]
    assert boot_partition(out).start == BOOT_START
    assert root_bytes(out) == root_bytes(image)  # the root filesystem is untouched
    assert "0 files" not in fat_check(out, tmp_path)

    cmdline = (fat_read(out, "/cmdline.txt") or b"").decode()
    assert cmdline.count("\n") == 1 and cmdline.startswith(CMDLINE.strip())
    assert "cgroup_enable=memory cgroup_memory=1" in cmdline
    assert "systemd.run=/boot/firmware/firstrun.sh" in cmdline
    firstrun = (fat_read(out, "/firstrun.sh") or b"").decode()
    assert "NEW_HOSTNAME=kitchen-pi" in firstrun and SSH_KEY in firstrun
    assert opts.wifi is not None and opts.wifi.psk not in firstrun  # only the derived PSK
    assert firstboot.wpa_psk(opts.wifi) in firstrun
    assert "set_timezone Europe/Berlin" in firstrun
    payload = fat_read(out, "/orchard/payload.tar")
    assert payload is not None
    assert_payload_matches(payload, plan)
    assert fat_read(out, "/config.txt") == b"dtparam=i2c_arm=on\n"

    # Provisioning the result again keeps cmdline.txt to one copy of each flag.
    again = tmp_path / "again.img"
    get("image")(image=out, out=again).apply(plan)
    cmdline2 = (fat_read(again, "/cmdline.txt") or b"").decode()
    assert cmdline2 == cmdline


def test_trixie_image_uses_cloud_init(
    tmp_path: Path, make_options: Callable[..., DeviceSettings]
) -> None:
    image = build_image(tmp_path / "in", flavour="trixie")
    opts = make_options(coordinator=None, password_hash="$6$salt$hash")
    plan = build_plan(opts, None)
    out = tmp_path / "shed.img"
    assert "trixie" in get("image")(image=image, out=out).apply(plan).summary()
    user_data = fat_read(out, "/user-data") or b""
    assert user_data.startswith(b"#cloud-config\n")
    config = yaml.safe_load(user_data)
    assert config["hostname"] == "kitchen-pi"
    assert config["users"][0]["ssh_authorized_keys"] == [SSH_KEY]
    assert config["users"][0]["passwd"] == "$6$salt$hash"
    assert any("payload.tar" in str(cmd) for cmd in config["runcmd"])
    network = yaml.safe_load(fat_read(out, "/network-config") or b"")
    assert opts.wifi is not None
    aps = network["network"]["wifis"]["wlan0"]["access-points"]
    assert aps == {"orchard-net": {"password": firstboot.wpa_psk(opts.wifi)}}
    meta = yaml.safe_load(fat_read(out, "/meta-data") or b"")
    assert re.fullmatch(r"orchard-kitchen-pi-[0-9a-f]{12}", meta["instance-id"])
    cmdline = (fat_read(out, "/cmdline.txt") or b"").decode()
    assert "cgroup_enable=memory" in cmdline and "systemd.run" not in cmdline
    assert fat_read(out, "/firstrun.sh") is None
    assert_payload_matches(fat_read(out, "/orchard/payload.tar") or b"", plan)


def test_xz_round_trip(tmp_path: Path, make_options: Callable[..., DeviceSettings]) -> None:
    image = build_image(tmp_path / "in")
    packed = tmp_path / "raspios.img.xz"
    subprocess.run(["xz", "-T1", "-k", "-0", str(image)], check=True, timeout=120)
    image.with_name(image.name + ".xz").rename(packed)
    plan = build_plan(make_options(coordinator=None), None)
    out = tmp_path / "kitchen.img.xz"
    get("image")(image=packed, out=out).apply(plan)
    plain = tmp_path / "kitchen.img"
    plain.write_bytes(
        subprocess.run(["xz", "-dc", str(out)], check=True, capture_output=True, timeout=120).stdout
    )
    assert_payload_matches(fat_read(plain, "/orchard/payload.tar") or b"", plan)
    assert lzma.decompress(packed.read_bytes()) == image.read_bytes()  # input kept


def test_not_an_image(tmp_path: Path, make_options: Callable[..., DeviceSettings]) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\0" * 4096)
    plan = build_plan(make_options(coordinator=None), None)
    with pytest.raises(ImageError, match="no MBR partition table"):
        get("image")(image=junk, out=tmp_path / "o.img").apply(plan)
    with pytest.raises(ImageError, match="is the input image"):
        get("image")(image=junk, out=junk).apply(plan)
    assert tree.expected_state(plan)[paths.AGENT_TOML].startswith("F 640 ")


def test_firstrun_cleanup_keeps_the_cgroup_flags(tmp_path: Path) -> None:
    """firstrun.sh strips its own hook with Imager's sed; the memory cgroup flags must stay."""
    edited = firstboot.edit_cmdline(CMDLINE, firstrun=True)
    cmdline = tmp_path / "cmdline.txt"
    cmdline.write_text(edited)
    subprocess.run(["sed", "-i", "s| systemd.run.*||g", str(cmdline)], check=True, timeout=30)
    assert cmdline.read_text() == CMDLINE.strip() + " cgroup_enable=memory cgroup_memory=1\n"


def test_the_fat_partition_reports_its_free_space_and_file_sizes(tmp_path: Path) -> None:
    image = build_image(tmp_path / "in")
    fs = MtoolsFs(image, BOOT_START)
    free = fs.free_bytes()
    assert BOOT_SIZE - 4 * MIB < free < BOOT_SIZE, free
    fs.write("orchard/blob.bin", b"x" * 100_000)
    assert fs.size_of("orchard/blob.bin") == 100_000 and fs.size_of("nope.txt") == 0
    assert free - 110_000 < fs.free_bytes() <= free - 100_000


def test_a_boot_partition_without_room_is_refused_before_anything_is_written(
    tmp_path: Path, fleet_ca: FleetCA, make_options: Callable[..., DeviceSettings]
) -> None:
    """A Pi OS boot partition too full for the wheelhouse: named sizes, nothing written."""
    image = build_image(tmp_path / "in")
    fs = MtoolsFs(image, BOOT_START)
    fs.write("filler.bin", b"\0" * (fs.free_bytes() - 512 * 1024))
    before = image.read_bytes()
    opts = make_options()
    plan = build_plan(opts, fleet_ca.issue(opts.device_id))
    out = tmp_path / "full.img"
    with pytest.raises(ImageError) as info:
        get("image")(image=image, out=out).apply(plan)
    text = str(info.value)
    assert text.startswith("boot partition: expected room for the first-boot files"), text
    assert "Received: 0 MiB free" in text and "--package 'orchard-fl[agent]'" in text, text
    assert not out.exists() and image.read_bytes() == before
