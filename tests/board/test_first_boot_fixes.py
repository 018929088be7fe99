"""What the emulated first boot found, pinned without booting (fast; runs everywhere).

Each test names the board-in-a-box observation it guards; the boot tests (test_board.py)
check the same behaviour on a running board.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from provisioning import paths, render
from provisioning.units import unit_dir


def _unit(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def _deps(unit: configparser.RawConfigParser, key: str) -> list[str]:
    return unit.get("Unit", key, fallback="").split()


def test_the_agent_does_not_wait_for_network_online() -> None:
    """Offline boot: orchard-agent.service was held back until systemd-networkd-wait-online
    timed out (120 s; NetworkManager-wait-online: 60 s) although it needs no network."""
    agent = _unit((unit_dir() / paths.AGENT_UNIT).read_text())
    assert "network-online.target" not in _deps(agent, "After")
    assert "network-online.target" not in _deps(agent, "Wants")
    assert "network.target" in _deps(agent, "After")  # stopped before the network at shutdown


def test_the_installer_waits_for_the_network_only_without_a_wheelhouse() -> None:
    """Offline first boot: the installer waited for network-online before installing from
    the wheelhouse on the card, which needs no network."""
    unit = _unit(render.FIRSTBOOT_UNIT)
    assert "network-online.target" not in _deps(unit, "After")
    assert "network-online.target" not in _deps(unit, "Wants")
    assert paths.AGENT_UNIT in _deps(unit, "Before")
    pre = unit.get("Service", "ExecStartPre").replace("\\\n", " ")
    assert pre.startswith("-/bin/sh -c ")  # a failed wait must not fail the install
    assert f"ls {paths.WHEELHOUSE}/*.whl" in pre and "|| " in pre
    assert pre.rstrip("'").endswith("systemctl start network-online.target")


@pytest.mark.skipif(shutil.which("sh") is None, reason="no sh")
@pytest.mark.parametrize("wheels", [True, False])
def test_the_installers_network_wait_runs_only_without_wheels(tmp_path: Path, wheels: bool) -> None:
    """The ExecStartPre command itself, with the wheelhouse path pointed at a temp dir and a
    stub systemctl recording what it was asked."""
    pre = _unit(render.FIRSTBOOT_UNIT).get("Service", "ExecStartPre").replace("\\\n", " ")
    command = pre.removeprefix("-/bin/sh -c ").strip("'")
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    if wheels:
        (wheelhouse / "orchard_fl-0.1.0-py3-none-any.whl").write_bytes(b"")
    stub = tmp_path / "bin" / "systemctl"
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls"}\n')
    stub.chmod(0o755)
    command = command.replace(paths.WHEELHOUSE, str(wheelhouse))
    done = subprocess.run(
        ["/bin/sh", "-c", command],
        env={"PATH": f"{stub.parent}:/usr/bin:/bin"},
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "calls").read_text() if (tmp_path / "calls").exists() else ""
    assert calls == ("" if wheels else "start network-online.target\n")
