"""``orchard-provision`` end to end through its CLI (typer's runner, real files)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from provisioning import paths
from provisioning.cli import app
from tests.provisioning.conftest import SSH_KEY, fake_wheel
from tests.provisioning.images import build_image, fat_read, needs_tools

runner = CliRunner()


def test_ca_and_rootfs_commands(tmp_path: Path) -> None:
    ca, root = tmp_path / "ca", tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    key = tmp_path / "me.pub"
    key.write_text(SSH_KEY + "\n")
    assert runner.invoke(app, ["ca", "init", "--dir", str(ca)]).exit_code == 0
    args = [
        "rootfs",
        "--root",
        str(root),
        "--device-id",
        "kitchen-pi",
        "--ca",
        str(ca),
        "--coordinator",
        "coord.local",
        "--mqtt",
        "mqtt://coord.local",
        "--ssh-key",
        str(key),
        "--wheelhouse",
        str(fake_wheel(tmp_path / "w")),
    ]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "wrote /etc/orchard/keys/supernode" in first.output
    assert "nothing changed" in runner.invoke(app, args).output
    toml = (root / paths.AGENT_TOML.lstrip("/")).read_text()
    assert 'username = "kitchen-pi"' in toml  # mqtt:// without credentials: issued password
    listing = runner.invoke(app, ["ca", "list", "--dir", str(ca)]).output
    assert listing.startswith("kitchen-pi\tactive\tmqtt=password\tsupernode=SHA256:")
    assert runner.invoke(app, ["ca", "revoke", "kitchen-pi", "--dir", str(ca)]).exit_code == 0
    assert "\trevoked " in runner.invoke(app, ["ca", "list", "--dir", str(ca)]).output
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "was revoked; provision it with --reissue" in again.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device-id", "bad id"], "device_id: expected"),
        (["--device-id", "pi", "--coordinator", "coord"], "needs --ca"),
        (["--device-id", "pi", "--ca", "/nonexistent"], "is not a fleet CA"),
    ],
)
def test_errors_are_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "etc").mkdir()
    result = runner.invoke(app, ["rootfs", "--root", str(tmp_path), *args])
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
@needs_tools
def test_image_command(tmp_path: Path) -> None:
    image = build_image(tmp_path / "in")
    result = runner.invoke(
        app,
        [
            "image",
            "--image",
            str(image),
            "--device-id",
            "kitchen-pi",
            "--insecure",
            "--coordinator",
            "10.0.0.2",
            "--wheelhouse",
            str(fake_wheel(tmp_path / "wheels")),
        ],
    )
    assert result.exit_code == 0, result.output
    out = image.with_name("raspios-bookworm-kitchen-pi.img")
    assert b"cgroup_enable=memory" in (fat_read(out, "/cmdline.txt") or b"")
    refused = runner.invoke(
        app, ["image", "--image", str(image), "--device-id", "x", "--write", "/dev/null"]
    )
    assert refused.exit_code == 1 and "--yes-erase-disk" in refused.output
