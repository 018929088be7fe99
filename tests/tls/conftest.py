"""A fleet PKI made by ``provisioning.ca`` and a real Mosquitto that requires client certificates.

``pki`` issues, through the product's own ``FleetCA``:
    server       the coordinator's TLS certificate (127.0.0.1, localhost): Mosquitto, SuperLink
    coordinator  the coordinator's own MQTT client certificate (``FleetCA.client_cert``)
    pi-good      a provisioned device (MQTT client certificate + SuperNode key pair)
    pi-expired   provisioned 1,200 days ago: its 3-year certificate has expired
    pi-revoked   provisioned, then revoked (its certificate kept aside, as the board still has it)
    pi-foreign   provisioned by another fleet's CA
"""

from __future__ import annotations

import datetime as dt
import getpass
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from coordinator.health.settings import FleetHealthSettings
from provisioning.ca import FleetCA
from tests.brokers import MOSQUITTO, accepts, free_port

LONG_AGO = dt.timedelta(days=1200)


@dataclass(frozen=True)
class Identity:
    cert: Path
    key: Path
    supernode_private: Path
    supernode_public: Path


@dataclass(frozen=True)
class Pki:
    root: Path
    ca: FleetCA
    server: tuple[Path, Path]
    coordinator: tuple[Path, Path]
    devices: dict[str, Identity]
    foreign_ca: Path

    @property
    def ca_pem(self) -> Path:
        return self.ca.dir / "ca.pem"

    def mqtt(self, name: str | None, *, ca: Path | None = None) -> dict[str, Any]:
        """``[mqtt]`` TLS keys for device ``name`` (None: unprovisioned, no certificate)."""
        table: dict[str, Any] = {"tls_ca": str(ca or self.ca_pem)}
        if name is not None:
            ident = self.devices[name]
            table.update(tls_cert=str(ident.cert), tls_key=str(ident.key))
        return table


def _identity(ca: FleetCA, device_id: str, keep: Path) -> Identity:
    """Issue ``device_id`` and copy its secrets to ``keep`` (what the board holds)."""
    issued = ca.dir / "devices" / device_id
    keep.mkdir(parents=True)
    for name in ("mqtt_cert", "mqtt_key", "supernode_private", "supernode_public"):
        shutil.copy2(issued / name, keep / name)
    return Identity(
        keep / "mqtt_cert", keep / "mqtt_key", keep / "supernode_private", keep / "supernode_public"
    )


def make_pki(root: Path) -> Pki:
    ca = FleetCA.init(root / "ca")
    boards = root / "boards"
    devices: dict[str, Identity] = {}
    # First, so that the CRL is re-signed with today's clock by the issues that follow.
    past = FleetCA.open(ca.dir, clock=lambda: dt.datetime.now(dt.UTC) - LONG_AGO)
    past.issue("pi-expired", mqtt="cert")
    devices["pi-expired"] = _identity(past, "pi-expired", boards / "pi-expired")
    for device_id in ("pi-good", "pi-revoked"):
        ca.issue(device_id, mqtt="cert")
        devices[device_id] = _identity(ca, device_id, boards / device_id)
    ca.revoke("pi-revoked")
    foreign = FleetCA.init(root / "foreign-ca", name="Another fleet CA")
    foreign.issue("pi-foreign", mqtt="cert")
    devices["pi-foreign"] = _identity(foreign, "pi-foreign", boards / "pi-foreign")
    return Pki(
        root=root,
        ca=ca,
        server=ca.server_cert("server", ("127.0.0.1", "localhost")),
        coordinator=ca.client_cert("coordinator"),
        devices=devices,
        foreign_ca=foreign.dir / "ca.pem",
    )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


class TlsMosquitto:
    """``/usr/sbin/mosquitto`` with one TLS listener that requires a fleet client certificate."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, ca: FleetCA, server: tuple[Path, Path]) -> None:
        self.workdir = workdir
        self.ca, self.server = ca, server
        self.port = free_port()
        self.log_path = workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def config(self) -> str:
        cert, key = self.server
        return (
            f"listener {self.port} {self.host}\n"
            f"cafile {self.ca.dir / 'ca.pem'}\ncertfile {cert}\nkeyfile {key}\n"
            f"crlfile {self.ca.dir / 'crl.pem'}\n"
            "require_certificate true\nuse_identity_as_username true\nallow_anonymous false\n"
            # mosquitto started as root drops to 'mosquitto', which cannot read the CA dir
            f"user {getpass.getuser()}\n"
            "persistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n"
            "log_type notice\nlog_type information\n"
        )

    def start(self, timeout: float = 10.0) -> None:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self.config())
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)], stdout=self._log, stderr=self._log
        )
        deadline = time.monotonic() + timeout
        while not accepts(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not start; see {self.log_path}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        self.stop()
        self.start()


def coordinator_health(pki: Pki, broker: TlsMosquitto) -> FleetHealthSettings:
    """``[mqtt]`` of coordinator.toml: the ingest on its own client certificate."""
    cert, key = pki.coordinator
    return FleetHealthSettings.from_mapping(
        {
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "tls_ca": str(pki.ca_pem),
                "tls_cert": str(cert),
                "tls_key": str(key),
            },
            "dashboard": {"enabled": False},
        }
    )


@pytest.fixture(scope="module")
def tls_broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsMosquitto]:
    broker = TlsMosquitto(tmp_path_factory.mktemp("mosquitto"), pki.ca, pki.server)
    broker.start()
    yield broker
    broker.stop()
