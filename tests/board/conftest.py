"""Fixtures for the board in a box (tests marked ``board``).

Skips, each with its reason: no ``qemu-system-aarch64`` (``apt-get install qemu-system-arm``),
no mtools/sfdisk, no Mosquitto, or no base image and no way to build one (mmdebstrap as root
with arm64 binfmt). ``ORCHARD_BOARD_BASE=/path/base.img`` uses a given base image;
``ORCHARD_BOARD_CACHE`` moves the cache (default ``~/.cache/orchard/board``). Console logs,
QEMU command lines and ``figures.json`` of every run are kept under ``<cache>/runs/``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from coordinator.federation.superlink import SuperLink, SuperLinkSettings
from tests.board import disk, host, image, qemu
from tests.brokers import free_port

BOARD_TOML = """\
# The emulated board's agent.toml; orchard-provision adds device_id and [mqtt] host/port.
[sensors.room]
driver = "synthetic"
interval_s = 2

[sensors.board]
driver = "system"
interval_s = 30

[http]
host = "0.0.0.0"      # the laptop reaches it through QEMU's hostfwd on its 127.0.0.1
lan = true

[mqtt]
health_interval_s = 10
"""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Boards run one at a time on one xdist worker: each QEMU wants both cores."""
    for item in items:
        if item.get_closest_marker("board"):
            item.add_marker(pytest.mark.xdist_group("board"))


@pytest.fixture(scope="session")
def board_tools() -> None:
    if os.environ.get("ORCHARD_BOARD") != "1":
        pytest.skip(
            "the board in a box runs with ORCHARD_BOARD=1 (scripts/board.sh): building the base "
            "image takes ~30 min once, each emulated first boot ~9 min (docs/board.md)"
        )
    if not Path(qemu.QEMU).exists():
        pytest.skip("qemu-system-aarch64 is not installed (apt-get install qemu-system-arm)")
    missing = [t for t in ("mcopy", "mtype", "sfdisk") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools for the board in a box: {missing} (mtools, fdisk)")
    if not Path(shutil.which("mosquitto") or "/usr/sbin/mosquitto").exists():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")


@dataclass
class Artifacts:
    dir: Path
    figures: dict[str, Any] = field(default_factory=dict)

    def record(self, **values: Any) -> None:
        self.figures.update(values)
        (self.dir / "figures.json").write_text(json.dumps(self.figures, indent=2) + "\n")


@pytest.fixture(scope="session")
def board_artifacts(board_tools: None) -> Iterator[Artifacts]:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    directory = image.cache_dir() / "runs" / f"{stamp}-{os.getpid()}"
    directory.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    artifacts = Artifacts(
        directory,
        {
            "emulated": "qemu-system-aarch64 -M virt -cpu cortex-a72 -m 1024, TCG (no KVM): "
            "every figure is emulated, several times slower than a Pi 4",
        },
    )
    yield artifacts
    artifacts.record(session_s=round(time.monotonic() - started, 1))
    print(f"\nboard in a box: figures in {directory / 'figures.json'}")
    print(json.dumps(artifacts.figures, indent=2))


def _base(recipe: image.Recipe, artifacts: Artifacts, name: str) -> image.BaseImage:
    if env := os.environ.get("ORCHARD_BOARD_BASE"):
        path = Path(env)
        meta = path.with_suffix(".json")
        facts = json.loads(meta.read_text()) if meta.exists() else {}
        return image.BaseImage(path, recipe, facts)
    found = image.cached(recipe)
    if found is None:
        missing = image.missing_build_tools()
        if missing:
            pytest.skip(f"no cached base image and cannot build one: missing {missing}")
        if not image.arm64_runs():
            pytest.skip(
                "no cached base image, and arm64 binaries do not run here "
                "(qemu-user-static + binfmt_misc are needed to build it)"
            )
        found = image.ensure(recipe, log=artifacts.dir / f"{name}-build.log")
        artifacts.record(**{f"{name}_built_this_run": True})
    artifacts.record(
        **{
            name: str(found.path),
            f"{name}_build_s": found.facts.get("build_seconds"),
            f"{name}_versions": {k: v for k, v in found.facts.items() if k.startswith("version_")},
        }
    )
    return found


@pytest.fixture(scope="session")
def base_image(board_tools: None, board_artifacts: Artifacts) -> image.BaseImage:
    return _base(image.Recipe(), board_artifacts, "base_image")


@pytest.fixture(scope="session")
def board_wheelhouse(board_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """None: ``orchard-provision image`` builds (or reuses) its own cached wheelhouse."""
    if host.tool_builds_wheelhouse():
        return None
    return host.wheelhouse(tmp_path_factory.mktemp("board") / "wheelhouse", image.cache_dir())


@pytest.fixture(scope="session")
def board_bundle(board_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return host.export_bundle(tmp_path_factory.mktemp("board-bundle"))


@dataclass
class ProvisionedBoard:
    board: qemu.Board
    device_id: str
    provision_s: float
    workdir: Path


MakeBoard = Callable[..., ProvisionedBoard]


@pytest.fixture
def make_board(
    base_image: image.BaseImage,
    board_wheelhouse: Path | None,
    board_artifacts: Artifacts,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[MakeBoard]:
    """``make_board(device_id, mqtt=URL)``: a provisioned copy of the base image, not booted.

    ``card_gib``: the SD card is that big; its first boot grows the root file system to fill
    the partition, as Raspberry Pi OS's first boot does.
    """
    boards: list[ProvisionedBoard] = []

    def make(
        device_id: str,
        *,
        mqtt: str | None = None,
        package: str = "orchard-fl[agent]",
        extra: tuple[str, ...] = (),
        toml: str = BOARD_TOML,
        card_gib: int | None = None,
        wheelhouse: Path | None = None,
    ) -> ProvisionedBoard:
        workdir = tmp_path / device_id
        workdir.mkdir()
        config = workdir / "agent.toml"
        config.write_text(toml)
        args = (*extra, "--mqtt", mqtt) if mqtt else extra
        out = workdir / "board.img"
        seconds = host.provision(
            base_image.path,
            out,
            device_id=device_id,
            wheelhouse=wheelhouse or (board_wheelhouse if package == "orchard-fl[agent]" else None),
            config=config,
            package=package,
            log=workdir / "provision.log",
            extra=args,
        )
        if card_gib is not None:  # a bigger SD card: the root partition is grown to fill it
            disk.grow_root(out, card_gib * 1024 * disk.MIB)
        made = ProvisionedBoard(qemu.Board(out, workdir), device_id, seconds, workdir)
        boards.append(made)
        return made

    yield make
    for made in boards:
        made.board.kill()
        keep = board_artifacts.dir / f"{request.node.name}-{made.device_id}"
        keep.mkdir(parents=True, exist_ok=True)
        for item in made.workdir.iterdir():
            if item.suffix in (".log", ".argv", ".toml"):
                shutil.copy2(item, keep / item.name)
        made.board.image.unlink(missing_ok=True)


@pytest.fixture
def superlink(tmp_path: Path) -> Iterator[SuperLink]:
    """The laptop's Flower SuperLink on 127.0.0.1 (insecure: the board reaches it by guestfwd)."""
    link = SuperLink(SuperLinkSettings(port=free_port(), workdir=tmp_path / "superlink"))
    link.start()
    try:
        yield link
    finally:
        link.stop()
