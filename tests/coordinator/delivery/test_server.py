"""The artifact server over real HTTP and real mutual TLS on 127.0.0.1 (fleet CA certificates)."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from agent.delivery.desired import Artifact, signed_bytes
from agent.delivery.fetch import HttpFetcher
from coordinator.dashboard.server import DashboardServer
from coordinator.delivery.catalog import Catalog
from coordinator.delivery.server import create_app
from coordinator.delivery.settings import DeliverySettings
from coordinator.errors import CoordinatorError
from orchard_common.signing import verify_artifact
from provisioning.ca import FleetCA
from tests.brokers import free_port

from .conftest import Pki, write_round

TRAVERSALS = (
    "/models/4711.1/../../../ca/ca.key",
    "/models/4711.1/..%2F..%2F..%2Fca%2Fca.key",
    "/models/4711.1/..%2Fround-2%2Fmodel.tflite",
    "/models/..%2F4711%2Fround-1/model.tflite",
    "/models/%2E%2E/model.tflite",
    "/models/4711.1/%2E%2E",
    "/models/4711.1/metrics.json",
    "/models/4711.1/model.tflite/extra",
    "/models/4711.1",
    "/",
)


@contextmanager
def running(catalog_for: Path, settings: DeliverySettings) -> Iterator[tuple[Catalog, str]]:
    catalog = Catalog.from_settings(settings, catalog_for)
    server = DashboardServer(
        create_app(catalog),
        settings.host,
        settings.port,
        name="delivery",
        tls_cert=settings.tls_cert,
        tls_key=settings.tls_key,
        tls_ca=settings.tls_ca,
    )
    server.start()
    try:
        assert server.url.rstrip("/") == settings.url
        yield catalog, settings.url
    finally:
        server.stop()


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    write_round(runs, "4711", 1, seed=1)
    write_round(runs, "4711", 2, seed=2)
    return runs


def _same_files(client: httpx.Client, artifact: Artifact) -> None:
    manifest = client.get(f"{artifact.url}/manifest.json")
    assert manifest.status_code == 200
    assert manifest.headers["content-type"] == "application/json"
    assert int(manifest.headers["content-length"]) == artifact.manifest_size
    assert hashlib.sha256(manifest.content).hexdigest() == artifact.manifest_sha256
    assert manifest.json()["version"] == artifact.version
    model = client.get(f"{artifact.url}/model.tflite")
    assert model.status_code == 200
    assert model.headers["content-type"] == "application/octet-stream"
    assert int(model.headers["content-length"]) == artifact.size == len(model.content)
    assert hashlib.sha256(model.content).hexdigest() == artifact.sha256


def _raw_get(url: str, path: str, context: ssl.SSLContext | None = None) -> tuple[int, str]:
    """``path`` exactly as given (httpx would normalise ``..`` away before sending)."""
    host, port = url.split("://")[1].split(":")
    conn: http.client.HTTPConnection
    if context is None:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
    else:
        conn = http.client.HTTPSConnection(host, int(port), timeout=10, context=context)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())["error"]
    finally:
        conn.close()


def test_plain_http_serves_the_catalog(runs: Path) -> None:
    settings = DeliverySettings(port=free_port())
    with running(runs, settings) as (catalog, url), httpx.Client(timeout=10) as client:
        artifact = catalog.artifact("4711", 1)
        assert artifact.url == f"{url}/models/4711.1"
        _same_files(client, artifact)
        head = client.head(f"{artifact.url}/model.tflite")
        assert head.status_code == 200 and int(head.headers["content-length"]) == artifact.size
        # A byte range, for a board resuming a cut download.
        part = client.get(f"{artifact.url}/model.tflite", headers={"Range": "bytes=10-19"})
        model = (runs / "4711" / "round-1" / "model.tflite").read_bytes()
        assert part.status_code == 206 and part.content == model[10:20]
        # A version never asked for by artifact() is found by run and round.
        _same_files(client, catalog.artifact("4711", 2))

        unknown = client.get(f"{url}/models/4711.9/model.tflite")
        assert unknown.status_code == 404
        assert "version: expected a model version in the catalog" in unknown.json()["error"]
        assert "4711.9" in unknown.json()["error"]
        unsigned = client.get(f"{artifact.url}/signer.pem")
        assert unsigned.status_code == 404 and "signer.pem" in unsigned.json()["error"]
        post = client.post(f"{artifact.url}/model.tflite")
        assert post.status_code == 405 and "GET or HEAD" in post.json()["error"]
        for path in TRAVERSALS:
            status, error = _raw_get(url, path)
            assert status == 404 and "expected" in error, (path, error)


def test_mutual_tls_serves_a_fleet_ca_client_and_nobody_else(
    runs: Path, pki: Pki, tmp_path: Path
) -> None:
    settings = DeliverySettings(
        port=free_port(),
        tls_cert=pki.server[0],
        tls_key=pki.server[1],
        tls_ca=pki.ca_pem,
        signing_cert=pki.signer[0],
        signing_key=pki.signer[1],
    )
    device = ssl.create_default_context(cafile=pki.ca_pem)
    device.load_cert_chain(*pki.client)
    with running(runs, settings) as (catalog, url):
        assert url.startswith("https://127.0.0.1:")
        artifact = catalog.artifact("4711", 1)
        assert artifact.signed
        with httpx.Client(verify=device, timeout=10) as client:
            _same_files(client, artifact)
            signer = client.get(f"{artifact.url}/signer.pem")
            assert signer.status_code == 200
            assert signer.headers["content-type"] == "application/x-pem-file"
            verify_artifact(
                artifact, signer.content, pki.ca_pem.read_bytes(), signed_bytes=signed_bytes
            )
            missing = client.get(f"{url}/models/nothing/model.tflite")
            assert missing.status_code == 404 and "nothing" in missing.json()["error"]
        for path in TRAVERSALS:
            status, error = _raw_get(url, path, device)
            assert status == 404 and "expected" in error, (path, error)

        # What the agent does (agent/delivery/fetch.py): same files, checked by digest.
        fetcher = HttpFetcher(
            timeout_s=10,
            tls_ca=str(pki.ca_pem),
            tls_cert=str(pki.client[0]),
            tls_key=str(pki.client[1]),
        )
        dest = tmp_path / "model.tflite"
        fetcher.fetch(
            f"{artifact.url}/model.tflite", dest, size=artifact.size, sha256=artifact.sha256
        )
        assert dest.read_bytes() == (runs / "4711" / "round-1" / "model.tflite").read_bytes()

        # The same raw request: a device's certificate gets the file ...
        assert _answer(url, device).startswith(b"HTTP/1.1 200 OK")
        # ... none, or one from another CA, nothing: the server aborts the handshake (the
        # asyncio TLS transport closes without an alert). With TLS 1.2 the client sees it in
        # the handshake; with TLS 1.3 its side of the handshake is over by then and the
        # connection closes before any byte of an answer.
        other = FleetCA.init(tmp_path / "other")
        stranger = ssl.create_default_context(cafile=pki.ca_pem)
        stranger.load_cert_chain(*other.client_cert("pi-1"))
        for context in (ssl.create_default_context(cafile=pki.ca_pem), stranger):
            assert _answer(url, context) == b""
            context.maximum_version = ssl.TLSVersion.TLSv1_2
            with pytest.raises(OSError):  # the handshake itself fails
                _answer(url, context)
            with (
                httpx.Client(verify=context, timeout=10) as client,
                pytest.raises(httpx.TransportError),
            ):
                client.get(f"{artifact.url}/model.tflite")


def _answer(url: str, context: ssl.SSLContext) -> bytes:
    """The first bytes the server answers a raw GET with over TLS (b"": it closed)."""
    host, port = url.split("://")[1].split(":")
    with (
        socket.create_connection((host, int(port)), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=host) as tls,
    ):
        try:
            tls.sendall(b"GET /models/4711.1/model.tflite HTTP/1.1\r\nHost: x\r\n\r\n")
            return tls.recv(64)
        except OSError:  # a reset instead of a close: the request was unread
            return b""


def test_a_port_in_use_is_named(runs: Path) -> None:
    settings = DeliverySettings(port=free_port())
    with running(runs, settings):
        second = DashboardServer(
            create_app(Catalog(runs, settings.url)), "127.0.0.1", settings.port, name="delivery"
        )
        with pytest.raises(CoordinatorError, match=r"set \[delivery\] port"):
            second.start()
