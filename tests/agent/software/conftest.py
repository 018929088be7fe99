from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.software.files import UpdateFiles
from agent.software.layout import VenvLayout
from orchard_common.signing import Signer
from tests.agent.software.helpers import Board, Services, wheelhouse


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Signer, Signer]:
    """The fleet CA's certificate, the coordinator's signer and another CA's signer."""
    from provisioning.ca import FleetCA

    tmp = tmp_path_factory.mktemp("ca")
    ca = FleetCA.init(tmp / "ca")
    other = FleetCA.init(tmp / "other")
    return (
        tmp / "ca" / "ca.pem",
        Signer(*ca.signer_cert("coordinator")),
        Signer(*other.signer_cert("coordinator")),
    )


def install_legacy(base: Path, version: str, wheels: Path) -> None:
    """What the first-boot installer leaves: a real directory at ``venv``."""
    venv = base / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index",
         "--disable-pip-version-check", "--find-links", str(wheels),
         f"orchard-fl[agent]=={version}"],
        check=True,
        timeout=300,
    )  # fmt: skip


@pytest.fixture
def make_board(tmp_path: Path, fleet: tuple[Path, Signer, Signer]) -> Callable[[str], Board]:
    def make(version: str = "0.1.0") -> Board:
        base = tmp_path / "opt" / "orchard"
        base.mkdir(parents=True)
        install_legacy(base, version, wheelhouse(tmp_path / "card-wheelhouse", version))
        layout = VenvLayout(base)
        state = tmp_path / "var" / "lib" / "orchard"
        state.mkdir(parents=True)
        return Board(tmp_path, layout, UpdateFiles(state), Services(layout), fleet[0])

    return make
