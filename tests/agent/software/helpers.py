"""A board's software layout in a temp dir: real venvs, real pip, small real wheels.

``agent_wheel`` is an ``orchard-fl`` wheel whose ``orchard-agent version`` prints its version
(``broken=True``: its module raises ImportError, as a release with a missing dependency does);
``stage`` lays a signed release out as the agent stages one and writes the request. Only
systemd and the agent's health are stand-ins (:class:`Services`), at the updater's edge.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import AgentError
from agent.software.apply import SIGNER_FILE, Budget, Updater
from agent.software.files import UpdateFiles, UpdateRequest
from agent.software.layout import VenvLayout
from agent.software.manifest import (
    MANIFEST_FILE,
    SoftwareManifest,
    Wheel,
    file_sha256,
    signed_bytes,
)
from orchard_common.signing import Signer, sign_artifact
from tests.provisioning.wheels import make_wheel

if TYPE_CHECKING:
    from coordinator.software.release import Release

PY = "{}.{}".format(*sys.version_info[:2])


def agent_wheel(directory: Path, version: str, *, broken: bool = False) -> Path:
    body = "raise ImportError('No module named orchard_missing_dep')\n" if broken else ""
    module = (
        f"{body}import orchard_dep\n\n"
        "def main():\n"
        f"    print('orchard-agent {version} (Python test)')\n"
    )
    return make_wheel(
        directory,
        "orchard-fl",
        version,
        requires=("orchard-dep>=1",),
        extras=("agent",),
        files={
            "orchard_fake_agent/__init__.py": module,
            f"orchard_fl-{version}.dist-info/entry_points.txt": "[console_scripts]\n"
            "orchard-agent = orchard_fake_agent:main\n",
        },
    )


def dep_wheel(directory: Path) -> Path:
    return make_wheel(directory, "orchard-dep", "1.0")


def wheelhouse(directory: Path, version: str, *, broken: bool = False) -> Path:
    agent_wheel(directory, version, broken=broken)
    dep_wheel(directory)
    return directory


@contextmanager
def served_release(tmp_path: Path, signer: Signer, version: str) -> Iterator[tuple[Release, Path]]:
    """``version`` published by the coordinator (coordinator/software/release.py) under
    ``<tmp>/coord/software`` and served by the real artifact server on 127.0.0.1."""
    from coordinator.dashboard.server import DashboardServer
    from coordinator.delivery.catalog import Catalog
    from coordinator.delivery.server import create_app
    from coordinator.software.release import publish, software_dir
    from tests.brokers import free_port

    state = tmp_path / "coord"
    (state / "runs").mkdir(parents=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    house = wheelhouse(tmp_path / "wheelhouse", version)
    (house / "wheelhouse.json").write_text(json.dumps({"target": {"python": PY}}))
    release = publish(house, software_dir(state), signer, url)
    server = DashboardServer(
        create_app(Catalog(state / "runs", url, signer)), "127.0.0.1", port, name="delivery"
    )
    server.start()
    try:
        yield release, state
    finally:
        server.stop()


def signed_manifest(wheels: Path, version: str, signer: Signer | None) -> SoftwareManifest:
    listed = tuple(
        Wheel(w.name, file_sha256(w), w.stat().st_size) for w in sorted(wheels.glob("*.whl"))
    )
    manifest = SoftwareManifest(version=version, python=PY, wheels=listed, created=1.0)
    if signer is None:
        return manifest
    signed: SoftwareManifest = sign_artifact(manifest, signer, signed_bytes=signed_bytes)
    return signed


@dataclass
class Services:
    """systemd and the agent's health as the updater sees them: restarts are recorded; the
    agent is healthy unless ``unhealthy`` says why, per environment that runs."""

    layout: VenvLayout
    unhealthy: dict[str, str] = field(default_factory=dict)  # version -> why not healthy
    restarts: list[str] = field(default_factory=list)  # the slot the link named at each restart
    fail_restart: bool = False

    def restart(self, unit: str, timeout_s: float) -> None:
        slot = self.layout.active() or "legacy"
        self.restarts.append(slot)
        if self.fail_restart and slot != self.restarts[0]:
            raise AgentError(f"`systemctl restart {unit}` failed: Job failed (exit 1)")

    def handover(self, unit: str, timeout_s: float) -> None:
        self.restart(unit, timeout_s)  # as far as this stand-in goes: a new agent runs

    def stop(self, unit: str, timeout_s: float) -> None:
        pass

    def probe(self, within_s: float) -> str | None:
        version = running_version(self.layout)
        return self.unhealthy.get(version)


def running_version(layout: VenvLayout) -> str:
    import subprocess

    out = subprocess.run(
        [str(layout.link / "bin" / "orchard-agent"), "version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return out.split()[1]


@dataclass
class Board:
    root: Path
    layout: VenvLayout
    files: UpdateFiles
    services: Services
    ca_pem: Path
    golden_fails: dict[str, str] = field(default_factory=dict)

    def updater(self, **kwargs: object) -> Updater:
        def golden(venv: Path) -> str | None:
            return self.golden_fails.get(running_version(self.layout))

        return Updater(
            self.layout,
            self.files,
            trust_ca=self.ca_pem,
            requirement="orchard-fl[agent]",
            services=self.services,
            probe=self.services.probe,
            golden=golden,
            budget=Budget(healthy_within_s=5.0),
            **kwargs,  # type: ignore[arg-type]
        )

    def stage(self, seq: int, version: str, signer: Signer | None, *, broken: bool = False) -> Path:
        """Lay out a release as the agent's Stager leaves it, and write the request."""
        staged = self.files.staging(version)
        wheelhouse(staged, version, broken=broken)
        manifest = signed_manifest(staged, version, signer)
        (staged / MANIFEST_FILE).write_text(manifest.to_json())
        if signer is not None:
            (staged / SIGNER_FILE).write_bytes(signer.cert_pem)
        self.files.write_request(
            UpdateRequest(seq, version, running_version(self.layout), str(staged), 1.0)
        )
        return staged
