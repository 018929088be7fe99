"""The fleet CA and inventory: what is issued, kept, verified by Flower's loaders, revoked."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning.ca import FleetCA
from provisioning.errors import CaError, InvalidOption


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_a_private_ca_and_refuses_to_overwrite(tmp_path: Path) -> None:
    ca = FleetCA.init(tmp_path / "ca")
    assert _mode(ca.dir) == 0o700
    assert _mode(ca.dir / "ca.key") == 0o600
    cert = x509.load_pem_x509_certificate((ca.dir / "ca.pem").read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    with pytest.raises(CaError, match="already holds a CA"):
        FleetCA.init(tmp_path / "ca")
    with pytest.raises(CaError, match="orchard-provision ca init"):
        FleetCA.open(tmp_path / "elsewhere")


def test_client_cert_is_signed_by_the_ca(fleet_ca: FleetCA) -> None:
    identity = fleet_ca.issue("kitchen-pi", mqtt="cert")
    assert identity.mqtt_cert is not None and identity.mqtt_key is not None
    cert = x509.load_pem_x509_certificate(identity.mqtt_cert)
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(identity.ca_pem))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kitchen-pi"
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usage
    secrets_dir = fleet_ca.dir / "devices" / "kitchen-pi"
    assert _mode(secrets_dir) == 0o700
    assert all(_mode(p) == 0o600 for p in secrets_dir.iterdir())


def test_supernode_key_is_what_flower_accepts(fleet_ca: FleetCA) -> None:
    from flwr.cli.supernode.register import try_load_public_key

    identity = fleet_ca.issue("kitchen-pi", mqtt="none")
    private = load_ssh_private_key(identity.supernode_private, None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)  # flower-supernode's own check
    assert private.curve.name == "secp384r1"
    pub_file = fleet_ca.dir / "supernodes" / "kitchen-pi.pub"
    assert pub_file.read_bytes() == identity.supernode_public
    assert try_load_public_key(pub_file)  # what `flwr supernode register` does with it
    record = json.loads((fleet_ca.dir / "devices" / "kitchen-pi.json").read_text())
    assert record["supernode"]["public_key"] == identity.supernode_public.decode().strip()
    assert "PRIVATE" not in json.dumps(record)


def test_issue_is_idempotent_until_reissue(fleet_ca: FleetCA) -> None:
    first = fleet_ca.issue("kitchen-pi", mqtt="password")
    assert first == fleet_ca.issue("kitchen-pi", mqtt="password")
    switched = fleet_ca.issue("kitchen-pi", mqtt="cert")  # another kind: new credentials
    assert switched.mqtt_cert is not None and switched.mqtt_password is None
    again = fleet_ca.issue("kitchen-pi", mqtt="cert", reissue=True)
    assert again.supernode_private != switched.supernode_private


def test_password_devices_land_in_the_mosquitto_password_file(fleet_ca: FleetCA) -> None:
    identity = fleet_ca.issue("kitchen-pi", mqtt="password")
    line = (fleet_ca.dir / "mosquitto" / "passwd").read_text().strip()
    assert line.startswith("kitchen-pi:$7$101$")
    assert identity.mqtt_password is not None and identity.mqtt_password not in line


def test_revoke_lists_the_cert_and_forgets_the_secrets(fleet_ca: FleetCA) -> None:
    fleet_ca.issue("kitchen-pi", mqtt="cert")
    fleet_ca.issue("shed-pi", mqtt="password")
    serial = json.loads((fleet_ca.dir / "devices" / "kitchen-pi.json").read_text())["mqtt"][
        "serial"
    ]
    fleet_ca.revoke("kitchen-pi")
    fleet_ca.revoke("shed-pi")
    crl = x509.load_pem_x509_crl((fleet_ca.dir / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    assert not (fleet_ca.dir / "devices" / "kitchen-pi").exists()
    assert not (fleet_ca.dir / "supernodes" / "kitchen-pi.pub").exists()
    assert (fleet_ca.dir / "mosquitto" / "passwd").read_text() == ""
    assert all(r["revoked_at"] for r in fleet_ca.records())
    with pytest.raises(CaError, match="revoked; provision it with --reissue"):
        fleet_ca.issue("kitchen-pi")
    assert fleet_ca.issue("kitchen-pi", reissue=True).mqtt_cert is not None
    with pytest.raises(CaError, match="no device 'nope'"):
        fleet_ca.revoke("nope")


def test_server_cert_has_the_names(fleet_ca: FleetCA) -> None:
    cert_path, key_path = fleet_ca.server_cert("coordinator", ("coord.local", "192.168.1.5"))
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["coord.local"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["192.168.1.5"]
    assert _mode(key_path) == 0o600


def test_bad_device_id_is_named(fleet_ca: FleetCA) -> None:
    with pytest.raises(InvalidOption, match=r"Received: device_id='../etc'"):
        fleet_ca.issue("../etc")
