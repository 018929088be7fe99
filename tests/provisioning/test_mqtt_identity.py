"""Issued MQTT credentials work against a real Mosquitto, and revoked ones stop working."""

from __future__ import annotations

import contextlib
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from provisioning.ca import DeviceIdentity, FleetCA
from tests.brokers import MOSQUITTO, accepts, free_port

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def mosquitto(ca: FleetCA, workdir: Path) -> Iterator[tuple[int, int]]:
    """Mosquitto with a password listener and a mutual-TLS listener from the fleet CA."""
    cert, key = ca.server_cert("broker", ("127.0.0.1",))
    plain, tls = free_port(), free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        "per_listener_settings true\npersistence false\nlog_dest stderr\nuser root\n"
        f"listener {plain} 127.0.0.1\nallow_anonymous false\n"
        f"password_file {ca.dir / 'mosquitto' / 'passwd'}\n"
        f"listener {tls} 127.0.0.1\nallow_anonymous false\nrequire_certificate true\n"
        f"use_identity_as_username true\ncafile {ca.dir / 'ca.pem'}\n"
        f"certfile {cert}\nkeyfile {key}\ncrlfile {ca.dir / 'crl.pem'}\n"
    )
    log = (workdir / "mosquitto.log").open("wb")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while not (accepts(plain) and accepts(tls)):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError((workdir / "mosquitto.log").read_text())
            time.sleep(0.02)
        yield plain, tls
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def connect(
    port: int, identity: DeviceIdentity, tmp: Path, *, tls: bool, password: str | None = None
) -> str:
    """CONNACK reason as text ("Success", "Not authorized", ...) or "tls-error: ..."."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=identity.device_id)
    result: list[str] = []
    done = threading.Event()

    def on_connect(c: mqtt.Client, u: object, f: object, reason: object, p: object) -> None:
        result.append(str(reason))
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = lambda *args: done.set()
    if tls:
        for name, blob in (
            ("ca", identity.ca_pem),
            ("cert", identity.mqtt_cert),
            ("key", identity.mqtt_key),
        ):
            assert blob is not None
            (tmp / f"client-{name}.pem").write_bytes(blob)
        client.tls_set(*(str(tmp / f"client-{n}.pem") for n in ("ca", "cert", "key")))
    else:
        client.username_pw_set(identity.mqtt_username, password or identity.mqtt_password)
    try:
        client.connect("127.0.0.1", port, keepalive=10)
    except (ssl.SSLError, OSError) as exc:
        return f"tls-error: {exc}"
    client.loop_start()
    try:
        assert done.wait(10), "no CONNACK and no disconnect within 10 s"
    finally:
        client.loop_stop()
        client.disconnect()
    return result[0] if result else "disconnected"


def test_issued_credentials_connect_and_revoked_ones_do_not(
    fleet_ca: FleetCA, tmp_path: Path
) -> None:
    by_cert = fleet_ca.issue("kitchen-pi", mqtt="cert")
    by_password = fleet_ca.issue("shed-pi", mqtt="password")
    with mosquitto(fleet_ca, tmp_path) as (plain, tls):
        assert connect(tls, by_cert, tmp_path, tls=True) == "Success"
        assert connect(plain, by_password, tmp_path, tls=False) == "Success"
        assert connect(plain, by_password, tmp_path, tls=False, password="wrong") != "Success"
    fleet_ca.revoke("kitchen-pi")
    fleet_ca.revoke("shed-pi")
    with mosquitto(fleet_ca, tmp_path) as (plain, tls):  # Mosquitto rereads crl/passwd on start
        assert connect(tls, by_cert, tmp_path, tls=True) != "Success"
        assert connect(plain, by_password, tmp_path, tls=False) != "Success"
