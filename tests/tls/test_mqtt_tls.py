"""MQTT over TLS with fleet client certificates, against a real Mosquitto (``require_certificate``).

A provisioned device's health reaches the coordinator's ingest (which has its own client
certificate); every device the broker refuses says why in one WARNING line that names the broker
and the cause, in both connection paths (``protocol="auto"`` probes first, ``"5"`` does not).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import MqttSettings
from agent.health.reporter import HealthReporter
from agent.health.schema import BirthParts
from agent.health.settings import HealthSettings
from agent.health.transport import PahoTransport, Will
from coordinator.health.records import DeviceRecord
from coordinator.health_service import HealthService
from provisioning.ca import FleetCA
from tests.agent.health.helpers import fake_pi
from tests.tls.conftest import Pki, TlsMosquitto, coordinator_health, make_pki
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def device_mqtt(broker: TlsMosquitto, tls: dict[str, Any], **extra: Any) -> MqttSettings:
    table = {"host": broker.host, "port": broker.port, "keepalive_s": 5, **tls, **extra}
    return MqttSettings.from_mapping(table)


class Hooks:
    def __init__(self) -> None:
        self.connects: list[str] = []

    def will(self) -> Will:
        return Will("orchard/v1/x/status", '{"state": "lost"}')

    def connected(self, protocol: str) -> None:
        self.connects.append(protocol)

    def disconnected(self) -> None:
        pass

    def message(self, topic: str, payload: bytes) -> None:
        pass


@pytest.fixture
def service(pki: Pki, tls_broker: TlsMosquitto, tmp_path: Path) -> Iterator[HealthService]:
    with HealthService(coordinator_health(pki, tls_broker), runs_dir=tmp_path / "runs") as svc:
        assert svc.ingest is not None and svc.ingest.subscribed, "the ingest was refused"
        yield svc


def test_a_provisioned_device_reports_over_tls_to_the_coordinator_ingest(
    pki: Pki, tls_broker: TlsMosquitto, service: HealthService, tmp_path: Path
) -> None:
    reporter = HealthReporter(
        device_mqtt(tls_broker, pki.mqtt("pi-good"), health_interval_s=1.0),
        "pi-good",
        health=HealthSettings(outbox_path=tmp_path / "outbox.db", facts_root=fake_pi(tmp_path)),
        birth=lambda: BirthParts(sensors=("env",), capabilities=("predict",)),
    )
    reporter.start()
    try:
        reporter.set_state("ready")
        assert service.registry is not None
        registry = service.registry

        def complete() -> DeviceRecord | None:
            r = registry.device("pi-good")
            return r if r and r.birth_doc and r.health_doc and r.status == "ready" else None

        record = wait_until(complete, 15.0, "birth, status and health of pi-good in the registry")
        assert record.birth is not None and record.birth.sensors == ("env",)
        assert record.health is not None and record.health.seq >= 0
    finally:
        reporter.stop()
    wait_until(
        lambda: (r := registry.device("pi-good")) and r.status == "disconnected",
        15.0,
        "the clean stop",
    )


REFUSED = {
    "unprovisioned": (None, "no client certificate (the broker requires one"),
    "pi-foreign": ("pi-foreign", "unknown CA (the broker does not trust this device's"),
    "pi-expired": ("pi-expired", "certificate expired (the broker refused this device's"),
    "pi-revoked": ("pi-revoked", "certificate revoked (the broker's CRL lists"),
}


@pytest.mark.parametrize("protocol", ["auto", "5"])
@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_refused_device_logs_the_cause(
    pki: Pki, tls_broker: TlsMosquitto, case: str, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    name, cause = REFUSED[case]
    expected = f"TLS handshake with broker 127.0.0.1:{tls_broker.port} failed: {cause}"
    settings = device_mqtt(tls_broker, pki.mqtt(name), protocol=protocol)
    # the unprovisioned cases also watch the retries: the cause is logged once, not per attempt
    _assert_refused(settings, expected, caplog, watch_s=1.5 if name is None else 0.0)


@pytest.mark.parametrize("protocol", ["auto", "5"])
def test_a_device_that_trusts_another_ca_refuses_the_broker(
    pki: Pki, tls_broker: TlsMosquitto, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    tls = pki.mqtt("pi-good", ca=pki.foreign_ca)
    expected = (
        f"TLS handshake with broker 127.0.0.1:{tls_broker.port} failed: certificate verify "
        f"failed: self-signed certificate in certificate chain (the broker's certificate is not "
        f"signed by tls_ca {pki.foreign_ca})"
    )
    _assert_refused(device_mqtt(tls_broker, tls, protocol=protocol), expected, caplog)


def _assert_refused(
    settings: MqttSettings, expected: str, caplog: pytest.LogCaptureFixture, watch_s: float = 0.0
) -> None:
    caplog.set_level(logging.WARNING, logger="agent.health.transport")
    transport = PahoTransport(settings, "refused", reconnect_min_s=0.2, reconnect_max_s=0.5)
    hooks = Hooks()
    transport.start(hooks)
    try:
        wait_until(
            lambda: (transport.last_error or "").startswith(expected),
            15.0,
            f"last_error = {expected!r}...",
        )
        time.sleep(watch_s)  # an observation window (retries every second), not a sync point
    finally:
        transport.stop(timeout=2.0)
    assert hooks.connects == [] and not transport.connected
    lines = [r.getMessage() for r in caplog.records if r.name == "agent.health.transport"]
    assert len(lines) == 1 and lines[0].startswith(expected), lines


def test_an_out_of_date_crl_is_named_and_refreshing_it_lets_devices_in(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Mosquitto refuses everyone once its crlfile is past its next update."""
    pki = make_pki(tmp_path / "pki")
    year_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    stale = FleetCA.open(pki.ca.dir, clock=lambda: year_ago).refresh_crl()
    assert stale < dt.datetime.now(dt.UTC)
    broker = TlsMosquitto(tmp_path, pki.ca, pki.server)
    broker.start()
    try:
        settings = device_mqtt(broker, pki.mqtt("pi-good"), protocol="5")
        transport = PahoTransport(settings, "pi-good", reconnect_min_s=0.2, reconnect_max_s=0.5)
        hooks = Hooks()
        caplog.set_level(logging.WARNING, logger="agent.health.transport")
        transport.start(hooks)
        try:
            wait_until(lambda: transport.last_error, 15.0, "the refusal")
            assert "certificate expired" in str(transport.last_error)
            assert "or its CRL is out of date" in str(transport.last_error)
            assert pki.ca.refresh_crl() > dt.datetime.now(dt.UTC) + dt.timedelta(days=300)
            broker.restart()  # Mosquitto reads its crlfile at start
            wait_until(lambda: hooks.connects, 15.0, "the connection")
            assert transport.last_error is None
        finally:
            transport.stop(timeout=2.0)
    finally:
        broker.stop()
