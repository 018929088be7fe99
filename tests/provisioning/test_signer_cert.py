"""The coordinator's code-signing certificate: issued by the fleet CA, kept, on the CLI."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from typer.testing import CliRunner

from orchard_common.signing import Signer, verify
from provisioning.ca import SIGNER_RENEW_DAYS, FleetCA
from provisioning.cli import app
from provisioning.errors import InvalidOption

runner = CliRunner()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_signer_cert_may_only_sign_and_is_the_cas(fleet_ca: FleetCA) -> None:
    cert_path, key_path = fleet_ca.signer_cert("coordinator")
    assert cert_path == fleet_ca.dir / "signers" / "coordinator.pem"
    assert key_path == fleet_ca.dir / "signers" / "coordinator.key"
    assert (_mode(cert_path), _mode(key_path)) == (0o644, 0o600)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    cert.verify_directly_issued_by(
        x509.load_pem_x509_certificate((fleet_ca.dir / "ca.pem").read_bytes())
    )
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "coordinator"
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CODE_SIGNING]  # not serverAuth, not clientAuth
    key_usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert key_usage.critical and key_usage.value.digital_signature
    assert not key_usage.value.key_cert_sign and not key_usage.value.key_encipherment
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    signer = Signer(cert_path, key_path)
    verify(
        b"data",
        signer.sign(b"data"),
        signer.cert_pem,
        (fleet_ca.dir / "ca.pem").read_bytes(),
        expected_fingerprint=signer.fingerprint,
    )


def test_signer_cert_is_kept_until_reissue_or_unusable(fleet_ca: FleetCA, tmp_path: Path) -> None:
    cert_path, key_path = fleet_ca.signer_cert("coordinator")
    first = (cert_path.read_bytes(), key_path.read_bytes())
    fleet_ca.signer_cert("coordinator")
    assert (cert_path.read_bytes(), key_path.read_bytes()) == first  # same fingerprint
    fleet_ca.signer_cert("coordinator", reissue=True)
    second = (cert_path.read_bytes(), key_path.read_bytes())
    assert second[0] != first[0] and second[1] != first[1]
    # A damaged key, or a certificate another CA issued, is replaced.
    key_path.write_bytes(b"garbage")
    fleet_ca.signer_cert("coordinator")
    Signer(cert_path, key_path)
    other = FleetCA.init(tmp_path / "other")
    foreign_cert, foreign_key = other.signer_cert("coordinator")
    cert_path.write_bytes(foreign_cert.read_bytes())
    key_path.write_bytes(foreign_key.read_bytes())
    fleet_ca.signer_cert("coordinator")
    assert cert_path.read_bytes() != foreign_cert.read_bytes()
    x509.load_pem_x509_certificate(cert_path.read_bytes()).verify_directly_issued_by(
        x509.load_pem_x509_certificate((fleet_ca.dir / "ca.pem").read_bytes())
    )


def test_a_signer_close_to_expiry_is_renewed(tmp_path: Path) -> None:
    now = [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)]
    ca = FleetCA.init(tmp_path / "ca", clock=lambda: now[0])
    cert_path, _ = ca.signer_cert("coordinator")
    first = cert_path.read_bytes()
    expires = x509.load_pem_x509_certificate(first).not_valid_after_utc
    now[0] = expires - dt.timedelta(days=SIGNER_RENEW_DAYS + 1)
    ca.signer_cert("coordinator")
    assert cert_path.read_bytes() == first
    now[0] = expires - dt.timedelta(days=SIGNER_RENEW_DAYS - 1)
    ca.signer_cert("coordinator")
    renewed = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert renewed.not_valid_after_utc > expires


@pytest.mark.parametrize("name", ["../escape", "bad name", ""])
def test_signer_cert_refuses_a_name_that_is_not_a_file_name(fleet_ca: FleetCA, name: str) -> None:
    with pytest.raises(InvalidOption, match="name: expected letters, digits"):
        fleet_ca.signer_cert(name)
    assert not (fleet_ca.dir / "signers").exists()


def test_cli_signer_cert(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    assert runner.invoke(app, ["ca", "init", "--dir", str(ca)]).exit_code == 0
    result = runner.invoke(app, ["ca", "signer-cert", "coordinator", "--dir", str(ca)])
    assert result.exit_code == 0, result.output
    cert, key = ca / "signers" / "coordinator.pem", ca / "signers" / "coordinator.key"
    assert f"certificate {cert}" in result.output and f"private key {key}" in result.output
    assert f'signing_cert = "{cert}"' in result.output
    first = cert.read_bytes()
    again = runner.invoke(app, ["ca", "signer-cert", "coordinator", "--dir", str(ca)])
    assert again.exit_code == 0 and cert.read_bytes() == first
    args = ["ca", "signer-cert", "coordinator", "--dir", str(ca), "--reissue"]
    assert runner.invoke(app, args).exit_code == 0 and cert.read_bytes() != first
    Signer(cert, key)
    missing = runner.invoke(app, ["ca", "signer-cert", "x", "--dir", str(tmp_path / "none")])
    assert missing.exit_code == 1 and "is not a fleet CA" in missing.output
    bad = runner.invoke(app, ["ca", "signer-cert", "a/b", "--dir", str(ca)])
    assert bad.exit_code == 1 and "name: expected" in bad.output
    assert "Traceback" not in bad.output
