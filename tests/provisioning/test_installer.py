"""The first-boot installer: shellcheck-clean, and idempotent against a temp root.

Only the OS edge is stubbed (useradd/groupadd/usermod edit the root's /etc/passwd and
/etc/group like the real ones; systemctl records its calls). The venv, pip (offline, from a
wheelhouse) and systemd-tmpfiles are real.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from provisioning import paths
from provisioning.options import DeviceSettings
from provisioning.plan import build_plan
from provisioning.targets import get
from tests.provisioning.conftest import fake_wheel

STUBS = {
    "groupadd": 'for a; do g=$a; done; echo "$g:x:990:" >> "$ORCHARD_ROOT/etc/group"',
    "useradd": "for a; do u=$a; done\n"
    'echo "$u:x:990:990::/var/lib/orchard:/usr/sbin/nologin" >> "$ORCHARD_ROOT/etc/passwd"\n'
    'echo "$u:x:991:" >> "$ORCHARD_ROOT/etc/group"',
    "usermod": 'for a; do u=$a; done; sed -i "s/^i2c:\\(.*\\):$/i2c:\\1:$u/" '
    '"$ORCHARD_ROOT/etc/group"',
    "systemctl": 'echo "systemctl $*" >> "$ORCHARD_ROOT/../systemctl.log"\n'
    'case "$*" in *is-enabled*) exit 1;; *is-active*) exit 1;; esac',
}


def stub_bin(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, body in STUBS.items():
        path = directory / name
        path.write_text(f"#!/bin/sh\n# test stub of the OS edge\n{body}\n")
        path.chmod(0o755)
    return directory


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_installer_and_firstrun_pass_shellcheck(
    tmp_path: Path, make_options: Callable[..., DeviceSettings]
) -> None:
    from provisioning.image.firstboot import firstrun_sh

    opts = make_options(timezone="Europe/Berlin")
    plan = build_plan(opts, None)
    (tmp_path / "install.sh").write_bytes(plan.file(paths.INSTALLER).content())
    (tmp_path / "firstrun.sh").write_bytes(firstrun_sh(opts))
    done = subprocess.run(
        ["shellcheck", str(tmp_path / "install.sh"), str(tmp_path / "firstrun.sh")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout


@pytest.mark.slow
def test_installer_runs_twice_against_a_temp_root(
    tmp_path: Path, make_options: Callable[..., DeviceSettings]
) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\n")
    opts = make_options(wheelhouse=fake_wheel(tmp_path / "wheels"), coordinator=None)
    get("rootfs")(root=root).apply(build_plan(opts, None))
    env = {
        **os.environ,
        "ORCHARD_ROOT": str(root),
        "PATH": f"{stub_bin(tmp_path / 'stubs')}:{os.environ['PATH']}",
    }

    def install() -> str:
        done = subprocess.run(
            ["sh", str(root / paths.INSTALLER.lstrip("/"))],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    first = install()
    assert "created user orchard" in first and "installed orchard-fl[agent,train]" in first
    agent = root / paths.VENV.lstrip("/") / "bin" / "orchard-agent"
    assert (
        subprocess.run([agent], capture_output=True, text=True, timeout=60).stdout == "fake agent\n"
    )
    assert "orchard:x:990:990:" in (root / "etc/passwd").read_text()
    assert "i2c:x:990:orchard" in (root / "etc/group").read_text()
    # Real systemd-tmpfiles applied the intended owners from the root's user database.
    assert (root / "var/lib/orchard").stat().st_uid == 990
    calls = (tmp_path / "systemctl.log").read_text()
    for unit in ("orchard-firstboot.service", "orchard-agent.service", "orchard-trainer.socket"):
        assert f"systemctl --root={root} enable {unit}" in calls

    (tmp_path / "systemctl.log").write_text("")
    STUBS["systemctl"] = 'echo "systemctl $*" >> "$ORCHARD_ROOT/../systemctl.log"'  # all enabled
    stub_bin(tmp_path / "stubs")
    second = install()
    assert second.strip() == "orchard-install: already installed; nothing changed"
    assert " enable " not in (tmp_path / "systemctl.log").read_text()


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (None, "no wheels in /var/cache/orchard/wheelhouse"),
        ({"target": {"python": "3.9"}}, "the wheelhouse is for Python 3.9; this board has 3."),
    ],
)
def test_installer_refuses_a_missing_or_foreign_wheelhouse(
    tmp_path: Path,
    make_options: Callable[..., DeviceSettings],
    manifest: dict[str, object] | None,
    message: str,
) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\n")
    get("rootfs")(root=root).apply(build_plan(make_options(coordinator=None), None))
    wheels = root / paths.WHEELHOUSE.lstrip("/")
    if manifest is None:
        for wheel in wheels.glob("*.whl"):
            wheel.unlink()
    else:
        (wheels / "wheelhouse.json").write_text(json.dumps(manifest))
    env = {
        **os.environ,
        "ORCHARD_ROOT": str(root),
        "ORCHARD_PYTHON": sys.executable,
        "PATH": f"{stub_bin(tmp_path / 'stubs')}:{os.environ['PATH']}",
    }
    done = subprocess.run(
        ["sh", str(root / paths.INSTALLER.lstrip("/"))],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and message in done.stderr, done.stderr
    assert not (root / paths.VENV.lstrip("/")).exists()
