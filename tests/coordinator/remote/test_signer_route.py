"""``GET /signer.pem`` on the artifact server over real HTTP: the signer a command names."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from coordinator.dashboard.server import DashboardServer
from coordinator.delivery.catalog import Catalog
from coordinator.delivery.server import create_app
from coordinator.delivery.settings import DeliverySettings
from coordinator.remote.sender import signer_url
from tests.brokers import free_port

from .conftest import Signing


@contextmanager
def serving(settings: DeliverySettings, runs: Path) -> Iterator[str]:
    server = DashboardServer(
        create_app(Catalog.from_settings(settings, runs)),
        settings.host,
        settings.port,
        name="delivery",
    )
    server.start()
    try:
        yield settings.url
    finally:
        server.stop()


def test_the_signer_certificate_is_served(tmp_path: Path, signing: Signing) -> None:
    settings = DeliverySettings(
        port=free_port(), signing_cert=signing.cert, signing_key=signing.key
    )
    with serving(settings, tmp_path / "runs") as url, httpx.Client(timeout=10) as client:
        assert signer_url(url) == f"{url}/signer.pem"
        got = client.get(signer_url(url))
        assert got.status_code == 200, got.text
        assert got.content == signing.cert.read_bytes()
        assert got.headers["content-type"] == "application/x-pem-file"
        head = client.head(signer_url(url))
        assert head.status_code == 200 and head.content == b""
        post = client.post(signer_url(url))
        assert post.status_code == 405 and "GET or HEAD" in post.json()["error"]


def test_an_unsigned_coordinator_answers_404_naming_the_setting(tmp_path: Path) -> None:
    settings = DeliverySettings(port=free_port())
    with serving(settings, tmp_path / "runs") as url, httpx.Client(timeout=10) as client:
        got = client.get(f"{url}/signer.pem")
        assert got.status_code == 404
        assert "[delivery] signing_cert" in got.json()["error"]
        other = client.get(f"{url}/signer.key")
        assert other.status_code == 404 and "or /signer.pem" in other.json()["error"]
