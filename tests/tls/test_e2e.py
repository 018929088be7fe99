"""TLS end to end: a SuperLink with TLS and SuperNode authentication, Mosquitto requiring client
certificates, the coordinator's health ingest over TLS, and two real ``orchard-agent run``
processes: one provisioned by the fleet CA, one a stranger (no MQTT certificate, a SuperNode
key the SuperLink never registered).

The provisioned device joins both, its health reaches the registry over TLS, and the round's
health-aware selection (that same registry) picks it for a one-round run that completes. The
stranger is refused by both, and its ``/healthz`` and log say why; so is a SuperNode that
trusts another CA.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.federation.settings import FederationSettings
from agent.federation.supernode import SupernodeSupervisor
from coordinator.demo import datasets
from coordinator.demo.fleet import Device, free_port, wait_connected, wait_until
from coordinator.demo.partition import Partitioning, split
from coordinator.federation.runconfig import RunSettings
from coordinator.federation.submit import follow, submit
from coordinator.federation.superlink import SuperLink, SuperLinkSettings
from coordinator.health_service import HealthService
from provisioning import keys
from tests.tls.conftest import Pki, TlsMosquitto, coordinator_health

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.fleet]

NOT_REGISTERED = "refused: not authorised (the SuperLink does not know this SuperNode's key"


@dataclass
class Federation:
    link: SuperLink
    health: HealthService
    good: Device
    stranger: Device
    prepared: datasets.Prepared
    work: Path


def _federation(pki: Pki, key: Path, public: Path, *, root: Path | None = None) -> dict[str, Any]:
    return {
        "insecure": False,
        "root_certificates": str(root or pki.ca_pem),
        "auth_private_key": str(key),
        "auth_public_key": str(public),
    }


@pytest.fixture(scope="module")
def federation(
    pki: Pki, tls_broker: TlsMosquitto, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Federation]:
    work = tmp_path_factory.mktemp("tls-fl")
    prepared = datasets.prepare("synthetic", "classify", 2, seed=1)
    parts = split(prepared.train, 2, Partitioning.parse("iid"), seed=1)
    datasets.write_validation(work / "validation.csv", prepared.validation)
    link = SuperLink(
        SuperLinkSettings(
            port=free_port(),
            workdir=work / "link",
            certificates=(pki.ca_pem, *pki.server),
            supernode_auth=True,
            supernode_keys=pki.ca.dir / "supernodes",  # what orchard-provision issued
        )
    )
    health = HealthService(coordinator_health(pki, tls_broker), runs_dir=work / "runs")
    good = Device(0, "pi-good", work / "pi-good")
    stranger = Device(1, "pi-stranger", work / "pi-stranger")
    mqtt = {"host": tls_broker.host, "port": tls_broker.port, "health_interval_s": 2.0}
    ident = pki.devices["pi-good"]
    stranger_key = keys.supernode_keys("stranger")  # made on the board, never registered
    stranger.root.mkdir(parents=True)
    (stranger.root / "supernode").write_bytes(stranger_key.private_pem)
    (stranger.root / "supernode.pub").write_bytes(stranger_key.public)
    extras = {
        "pi-good": {
            "federation": _federation(pki, ident.supernode_private, ident.supernode_public),
            "mqtt": {**mqtt, **pki.mqtt("pi-good")},
            "training": {"idle_scheduling": False},  # see tests/coordinator/federation/test_e2e
        },
        "pi-stranger": {
            "federation": _federation(
                pki, stranger.root / "supernode", stranger.root / "supernode.pub"
            ),
            "mqtt": {**mqtt, **pki.mqtt(None)},
        },
    }
    try:
        link.start()
        health.start()
        assert health.ingest is not None and health.ingest.subscribed
        for device, part in zip((good, stranger), parts, strict=True):
            device.configure(
                superlink=link.settings.address,
                sensor=prepared.live_sensor(device, part),
                extra=extras[device.device_id],
            )
            device.seed(part)
            device.start()
        wait_connected([good], 180)
        yield Federation(link, health, good, stranger, prepared, work)
    finally:
        for device in (good, stranger):
            device.stop()
        health.stop()
        link.stop()


def test_the_superlink_registered_exactly_the_fleet_cas_keys(federation: Federation) -> None:
    registered = json.loads((federation.link.workdir / "registered.json").read_text())
    # pi-good and pi-expired; pi-revoked's key left supernodes/ when it was revoked
    assert len(registered) == 2
    nodes = federation.link.flwr("supernode", "ls", "orchard")["nodes"]
    assert {int(n["node-id"]) for n in nodes} == set(registered.values())


def test_a_key_that_leaves_the_directory_is_unregistered(
    federation: Federation, pki: Pki, tmp_path: Path
) -> None:
    """What a revoke does to supernodes/; here on a copy, so the CA stays as it is."""
    kept = tmp_path / "supernodes"
    kept.mkdir()
    shutil.copy2(pki.ca.dir / "supernodes" / "pi-good.pub", kept)
    before = json.loads((federation.link.workdir / "registered.json").read_text())
    after = federation.link.sync_supernodes(kept)
    assert len(after) == 1 and set(after.items()) < set(before.items())
    (gone,) = set(before.values()) - set(after.values())
    nodes = federation.link.flwr("supernode", "ls", "orchard")["nodes"]
    assert {int(n["node-id"]): n["status"] for n in nodes}[gone] == "unregistered"


def test_an_unprovisioned_device_is_refused_by_both_and_says_why(
    federation: Federation, tls_broker: TlsMosquitto
) -> None:
    stranger = federation.stranger
    state = wait_until(
        "the stranger's /healthz to say why",
        lambda: (
            (h := stranger.health())
            and str(h["federation"].get("last_error")).startswith(NOT_REGISTERED)
            and h["federation"]
        ),
        120,
    )
    assert state["supernode"] in ("failed", "starting") and state["node_id"] is None
    log = (stranger.root / "agent.log").read_text()
    assert f"refused this SuperNode: {NOT_REGISTERED}" in log
    assert (
        f"TLS handshake with broker 127.0.0.1:{tls_broker.port} failed: no client certificate"
        in log
    )
    mqtt = (stranger.health() or {})["mqtt"]
    assert mqtt["connected"] is False
    assert str(mqtt["last_error"]).startswith("TLS handshake with broker"), mqtt
    assert federation.health.registry is not None
    assert federation.health.registry.device("pi-stranger") is None


def test_a_supernode_that_trusts_another_ca_is_refused(
    federation: Federation, pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ident = pki.devices["pi-good"]
    settings = FederationSettings.from_mapping(
        {
            "enabled": True,
            "superlink": federation.link.settings.address,
            "runtime_port": free_port(),
            **_federation(
                pki, ident.supernode_private, ident.supernode_public, root=pki.foreign_ca
            ),
        },
        tmp_path,
    )
    caplog.set_level(logging.WARNING, logger="agent.federation.supernode")
    supervisor = SupernodeSupervisor(settings, state_dir=tmp_path, node_config={})
    supervisor.start()
    try:
        wait_until("a refusal", lambda: supervisor.last_error, 60)
        wait_until("the exit", lambda: supervisor.state == "failed", 30)
    finally:
        supervisor.stop()
    expected = "TLS: certificate verify failed: unable to get local issuer certificate"
    assert str(supervisor.last_error).startswith(expected), supervisor.last_error
    assert any(f"refused this SuperNode: {expected}" in r.getMessage() for r in caplog.records)


def test_the_provisioned_device_reports_over_tls_and_completes_a_round(
    federation: Federation,
) -> None:
    registry = federation.health.registry
    assert registry is not None
    node_id = (federation.good.health() or {})["federation"]["node_id"]
    record = wait_until(
        "pi-good's birth, status and health (with its node id) in the registry",
        lambda: (
            (r := registry.device("pi-good"))
            and r.birth_doc
            and r.status == "ready"
            and r.node_id == node_id
            and r
        ),
        60,
    )
    assert record.health is not None and record.health.federation.supernode == "connected"

    settings = RunSettings(
        num_server_rounds=1,
        min_devices=1,
        round_timeout=180.0,
        wait_for_devices=30.0,
        local_epochs=1,
        model_spec=json.dumps(federation.prepared.spec.to_dict()),
        model_name="tls",
        quantization="float32",
        out_dir=str(federation.work / "runs"),
        validation=str(federation.work / "validation.csv"),
        registry=str(federation.health.settings.registry.resolve_path(federation.health.runs_dir)),
    )
    run_id = submit(federation.link, settings, federation.work / "submit")
    history = follow(federation.link, run_id, settings, timeout=400)

    assert history["status"] == "completed" and len(history["rounds"]) == 1
    first = history["rounds"][0]
    assert first["selected"] == [node_id] and first["skipped"] == {}
    replies = first["phases"]["train"]["replies"]
    assert [r["node_id"] for r in replies] == [node_id]
    assert all("error" not in r for r in replies), replies
    assert (federation.work / "runs" / run_id / "round-1" / "model.tflite").exists()
