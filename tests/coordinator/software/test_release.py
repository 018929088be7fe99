"""Publishing a wheelhouse as a signed release, and the artifact server's /software/ routes."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from agent.software.manifest import SoftwareManifest, signed_bytes
from coordinator.dashboard.server import DashboardServer
from coordinator.delivery.catalog import Catalog
from coordinator.delivery.server import create_app
from coordinator.software.errors import ReleaseError
from coordinator.software.release import publish, software_dir
from orchard_common.signing import Signer, verify_artifact
from provisioning.ca import FleetCA
from tests.agent.software.helpers import dep_wheel, wheelhouse
from tests.brokers import free_port


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Signer, bytes]:
    tmp = tmp_path_factory.mktemp("ca")
    ca = FleetCA.init(tmp / "ca")
    return Signer(*ca.signer_cert("coordinator")), (tmp / "ca" / "ca.pem").read_bytes()


def test_publish_signs_every_wheel_and_is_idempotent(
    tmp_path: Path, signer: tuple[Signer, bytes]
) -> None:
    house = wheelhouse(tmp_path / "wh", "0.2.0")
    (house / "wheelhouse.json").write_text(json.dumps({"target": {"python": "3.11"}}))
    release = publish(house, tmp_path / "software", signer[0], "http://c:8781/")
    assert release.version == "0.2.0" and release.manifest.python == "3.11"
    assert release.url == "http://c:8781/software/0.2.0/manifest.json"
    assert {w.file for w in release.manifest.wheels} == {p.name for p in house.glob("*.whl")}
    on_disk = SoftwareManifest.from_json((release.directory / "manifest.json").read_bytes())
    verify_artifact(on_disk, signer[0].cert_pem, signer[1], signed_bytes=signed_bytes)
    again = publish(house, tmp_path / "software", signer[0], "http://c:8781")
    assert again.manifest_sha256 == release.manifest_sha256  # the same bytes, served unchanged

    # A wheel a crash left empty under a written manifest is copied again, not served cut.
    cut = next(release.directory.glob("orchard_dep-*.whl"))
    cut.write_bytes(b"")
    publish(house, tmp_path / "software", signer[0], "http://c:8781")
    assert cut.read_bytes() == (house / cut.name).read_bytes()


def test_publish_refuses_what_boards_could_not_use(
    tmp_path: Path, signer: tuple[Signer, bytes]
) -> None:
    out = tmp_path / "software"
    with pytest.raises(ReleaseError, match="expected wheels"):
        publish(tmp_path, out, signer[0], "http://c")
    dep_wheel(tmp_path / "deps")
    with pytest.raises(ReleaseError, match="exactly one orchard-fl wheel"):
        publish(tmp_path / "deps", out, signer[0], "http://c")
    house = wheelhouse(tmp_path / "wh", "0.2.0")
    with pytest.raises(ReleaseError, match="--python"):
        publish(house, out, signer[0], "http://c")  # no wheelhouse.json, no cp3XX wheel
    publish(house, out, signer[0], "http://c", python="3.11")
    other = wheelhouse(tmp_path / "wh2", "0.2.0", broken=True)  # other bytes, same version
    with pytest.raises(ReleaseError, match="bump the version"):
        publish(other, out, signer[0], "http://c", python="3.11")
    (out / "0.2.0" / "manifest.json").write_text("{")
    with pytest.raises(ReleaseError, match="is unreadable"):
        publish(house, out, signer[0], "http://c", python="3.11")


def test_the_artifact_server_serves_listed_files_only(
    tmp_path: Path, signer: tuple[Signer, bytes]
) -> None:
    state = tmp_path / "coord"
    (state / "runs").mkdir(parents=True)
    house = wheelhouse(tmp_path / "wh", "0.2.0")
    release = publish(house, software_dir(state), signer[0], "http://c", python="3.11")
    (release.directory / "notes.txt").write_text("not listed")
    port = free_port()
    server = DashboardServer(
        create_app(Catalog(state / "runs", f"http://127.0.0.1:{port}", signer[0])),
        "127.0.0.1",
        port,
        name="delivery",
    )
    server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            got = client.get("/software/0.2.0/manifest.json")
            assert got.status_code == 200 and got.json()["version"] == "0.2.0"
            wheel = "orchard_fl-0.2.0-py3-none-any.whl"
            got = client.get(f"/software/0.2.0/{wheel}")
            assert got.content == (house / wheel).read_bytes()
            for path in (
                "/software/0.2.0/notes.txt",
                "/software/0.9.9/manifest.json",
                "/software/0.2.0/..%2F..%2Fruns",
                "/software/../coord/manifest.json",
            ):
                got = client.get(path)
                assert got.status_code == 404, path
                assert "error" in got.json()
    finally:
        server.stop()
