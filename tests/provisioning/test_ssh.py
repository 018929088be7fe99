"""ssh mode against a real OpenSSH server on a random loopback port, into a temp root.

sshd (Debian openssh-server) runs as the current user with a temp host key and
authorized_keys; ``SetEnv PATH=`` puts the OS-edge stubs (useradd & co., a stateful fake
systemctl) first on the remote side. The venv, pip, tar and systemd-tmpfiles are real.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioning import paths
from provisioning.errors import TargetError
from provisioning.options import DeviceSettings
from provisioning.plan import build_plan
from provisioning.targets import get
from tests.brokers import accepts, free_port
from tests.provisioning.conftest import fake_wheel
from tests.provisioning.test_installer import stub_bin

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(SSHD).exists() or shutil.which("ssh") is None,
        reason="openssh-server/openssh-client not installed",
    ),
]
FAKE_SYSTEMCTL = """\
echo "systemctl $*" >> "$FAKE_LOG"
unit=""; for a; do unit=$a; done
case "$*" in
  *is-enabled*) grep -qx "$unit" "$FAKE_LOG.enabled" 2>/dev/null;;
  *is-active*) exit 1;;
  *" enable "*) echo "$unit" >> "$FAKE_LOG.enabled";;
esac
"""


@dataclass
class Sshd:
    port: int
    user: str
    options: list[str]
    log: Path
    board: Path


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    d = tmp_path / "sshd"
    d.mkdir()
    for name in ("host", "client"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)],
            check=True,
            timeout=30,
        )
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    stubs = stub_bin(d / "stubs")
    (stubs / "systemctl").write_text("#!/bin/sh\n# stateful fake systemctl\n" + FAKE_SYSTEMCTL)
    log = tmp_path / "systemctl.log"
    board = tmp_path / "board"
    (board / "etc").mkdir(parents=True)
    (board / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (board / "etc/group").write_text("root:x:0:\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM no\n"
        f"StrictModes no\nPermitRootLogin prohibit-password\nPidFile {d / 'sshd.pid'}\n"
        f"SetEnv PATH={stubs}:{os.environ['PATH']} FAKE_LOG={log}\n"
    )
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {(d / 'host.pub').read_text()}")
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=(d / "sshd.log").open("wb")
    )
    try:
        deadline = time.monotonic() + 10
        while not accepts(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("sshd did not start: " + (d / "sshd.log").read_text())
            time.sleep(0.05)
        options = [
            "-F",
            "/dev/null",
            "-i",
            str(d / "client"),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={d / 'known_hosts'}",
            "-o",
            "StrictHostKeyChecking=yes",
        ]
        user = (
            os.environ.get("USER")
            or subprocess.run(
                ["id", "-un"], capture_output=True, text=True, check=True
            ).stdout.strip()
        )
        yield Sshd(port, user, options, log, board)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_ssh_applies_the_plan_and_a_second_run_changes_nothing(
    sshd: Sshd, tmp_path: Path, make_options: Callable[..., DeviceSettings]
) -> None:
    opts = make_options(coordinator=None, wheelhouse=fake_wheel(tmp_path / "wheels"))
    target = get("ssh")(
        host=f"{sshd.user}@127.0.0.1",
        port=sshd.port,
        root=str(sshd.board),
        sudo=False,
        live=True,
        ssh_options=sshd.options,
    )
    first = target.apply(build_plan(opts, None))
    assert paths.AGENT_TOML in first.changed and len(first.changed) > 10
    for planned in build_plan(opts, None).files:
        path = sshd.board / planned.path.lstrip("/")
        assert path.read_bytes() == planned.content(), planned.path
        assert path.stat().st_mode & 0o7777 == planned.mode, planned.path
    agent = sshd.board / "opt/orchard/venv/bin/orchard-agent"
    assert agent.exists()
    calls = sshd.log.read_text()
    assert "systemctl daemon-reload" in calls and "systemctl restart orchard-agent.service" in calls
    assert f"systemctl --root={sshd.board} enable orchard-agent.service" in calls

    sshd.log.write_text("")
    second = target.apply(build_plan(opts, None))
    assert second.changed == [] and "nothing changed" in second.summary()
    assert sshd.log.read_text() == ""  # nothing ran on the board

    budget = make_options(
        coordinator=None,
        wheelhouse=tmp_path / "wheels",
        base_config={"training": {"memory_mb": 256}},
    )
    third = target.apply(build_plan(budget, None))
    assert sorted(third.changed) == sorted([paths.AGENT_TOML, paths.BUDGET_DROPIN])
    assert "MemoryMax=256M" in (sshd.board / paths.BUDGET_DROPIN.lstrip("/")).read_text()
    assert "already installed; nothing changed" in third.actions[0]
    assert "systemctl restart orchard-agent.service" in sshd.log.read_text()


def test_unreachable_board_is_a_clear_error(make_options: Callable[..., DeviceSettings]) -> None:
    target = get("ssh")(
        host="nobody@127.0.0.1",
        port=free_port(),
        sudo=False,
        ssh_options=["-F", "/dev/null", "-o", "ConnectTimeout=5"],
    )
    with pytest.raises(TargetError, match="cannot connect"):
        target.apply(build_plan(make_options(coordinator=None), None))
