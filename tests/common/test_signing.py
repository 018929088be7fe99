"""Signed models: real certificates from the real FleetCA, every refusal reason of ``verify``."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.delivery.desired import Artifact, signed_bytes
from orchard_common.errors import REASONS, CommonError, SignatureError, SigningError
from orchard_common.signing import Signer, sign_artifact, verify, verify_artifact
from provisioning.ca import FleetCA

DATA = b"orchard-desired/1\nrun-1.3\n" + b"ab" * 32


@pytest.fixture
def ca(tmp_path: Path) -> FleetCA:
    return FleetCA.init(tmp_path / "ca")


@pytest.fixture
def signer(ca: FleetCA) -> Signer:
    return Signer(*ca.signer_cert("coordinator"))


def _ca_pem(ca: FleetCA) -> bytes:
    return (ca.dir / "ca.pem").read_bytes()


def _refused(reason: str, **overrides: object) -> SignatureError:
    assert reason in REASONS
    with pytest.raises(SignatureError) as caught:
        verify(**overrides)  # type: ignore[arg-type]
    assert caught.value.reason == reason, caught.value
    assert isinstance(caught.value, CommonError)
    return caught.value


def _args(signer: Signer, ca: FleetCA, **changes: object) -> dict[str, object]:
    args: dict[str, object] = {
        "data": DATA,
        "signature_b64": signer.sign(DATA),
        "signer_cert_pem": signer.cert_pem,
        "ca_pem": _ca_pem(ca),
        "expected_fingerprint": signer.fingerprint,
    }
    return {**args, **changes}


def test_round_trip_with_the_fleet_ca_signer(signer: Signer, ca: FleetCA) -> None:
    cert = x509.load_pem_x509_certificate(signer.cert_pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert signer.fingerprint == hashlib.sha256(der).hexdigest()
    assert signer.cert_pem == signer.cert_path.read_bytes()
    signature = signer.sign(DATA)
    raw = base64.b64decode(signature, validate=True)
    assert raw[0] == 0x30  # DER SEQUENCE (r, s)
    verify(DATA, signature, signer.cert_pem, _ca_pem(ca), expected_fingerprint=signer.fingerprint)
    # Uppercase hex names the same certificate.
    verify(
        DATA,
        signature,
        signer.cert_pem,
        _ca_pem(ca),
        expected_fingerprint=signer.fingerprint.upper(),
    )


def test_tampered_bytes_are_refused(signer: Signer, ca: FleetCA) -> None:
    error = _refused("signature", **_args(signer, ca, data=DATA + b"x"))
    assert "does not match" in str(error)
    flipped = bytearray(base64.b64decode(signer.sign(DATA)))
    flipped[-1] ^= 0x01
    _refused("signature", **_args(signer, ca, signature_b64=base64.b64encode(flipped).decode()))


def test_a_signer_from_another_ca_is_refused(ca: FleetCA, tmp_path: Path) -> None:
    other = FleetCA.init(tmp_path / "other", name="Another fleet CA")
    stranger = Signer(*other.signer_cert("coordinator"))
    error = _refused("issuer", **_args(stranger, ca))
    assert "Orchard fleet CA" in str(error) and "Another fleet CA" in str(error)


def test_expired_and_not_yet_valid_by_an_injected_now(signer: Signer, ca: FleetCA) -> None:
    cert = x509.load_pem_x509_certificate(signer.cert_pem)
    late = cert.not_valid_after_utc + dt.timedelta(days=1)
    early = cert.not_valid_before_utc - dt.timedelta(days=1)
    assert "not_valid_after=" in str(_refused("expired", **_args(signer, ca, now=late)))
    _refused("not_yet_valid", **_args(signer, ca, now=early))
    # A naive datetime is taken as UTC.
    _refused("expired", **_args(signer, ca, now=late.replace(tzinfo=None)))


def test_a_certificate_without_code_signing_is_refused(ca: FleetCA) -> None:
    cert_path, key_path = ca.server_cert("coordinator", ("127.0.0.1",))
    with pytest.raises(SigningError, match="codeSigning") as caught:
        Signer(cert_path, key_path)
    assert caught.value.field == "signing_cert"
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signature = base64.b64encode(key.sign(DATA, ec.ECDSA(hashes.SHA256()))).decode()
    server_pem = cert_path.read_bytes()
    fingerprint = hashlib.sha256(
        x509.load_pem_x509_certificate(server_pem).public_bytes(serialization.Encoding.DER)
    ).hexdigest()
    error = _refused(
        "usage",
        data=DATA,
        signature_b64=signature,
        signer_cert_pem=server_pem,
        ca_pem=_ca_pem(ca),
        expected_fingerprint=fingerprint,
    )
    assert "codeSigning" in str(error)


def test_a_key_that_is_not_p256_is_refused(ca: FleetCA) -> None:
    """A code-signing certificate the CA did issue, but for a P-384 key."""
    ca_key = serialization.load_pem_private_key((ca.dir / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(_ca_pem(ca))
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP384R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p384")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    signature = base64.b64encode(key.sign(DATA, ec.ECDSA(hashes.SHA256()))).decode()
    fingerprint = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    error = _refused(
        "key",
        data=DATA,
        signature_b64=signature,
        signer_cert_pem=pem,
        ca_pem=_ca_pem(ca),
        expected_fingerprint=fingerprint,
    )
    assert "secp384r1" in str(error)


def test_a_wrong_fingerprint_is_refused(signer: Signer, ca: FleetCA) -> None:
    error = _refused("fingerprint", **_args(signer, ca, expected_fingerprint="0" * 64))
    assert signer.fingerprint in str(error) and "0" * 64 in str(error)


@pytest.mark.parametrize("garbage", ["", "not base64!", "QUJD=x", "====", "\u00e9t\u00e9"])
def test_garbage_base64_is_malformed(signer: Signer, ca: FleetCA, garbage: str) -> None:
    error = _refused("malformed", **_args(signer, ca, signature_b64=garbage))
    assert str(error).startswith("signature: expected base64")


def test_garbage_pem_is_malformed(signer: Signer, ca: FleetCA) -> None:
    assert "signer certificate" in str(
        _refused("malformed", **_args(signer, ca, signer_cert_pem=b"-----BEGIN nonsense"))
    )
    assert "CA certificate" in str(_refused("malformed", **_args(signer, ca, ca_pem=b"")))


def test_signer_refuses_what_cannot_sign(ca: FleetCA, tmp_path: Path) -> None:
    cert, key = ca.signer_cert("coordinator")
    other_cert, other_key = ca.signer_cert("other")
    with pytest.raises(SigningError, match=r"signing_key: expected the private key of") as caught:
        Signer(cert, other_key)
    assert caught.value.value == str(other_key)
    private = serialization.load_pem_private_key(key.read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(SigningError, match="an unencrypted PEM private key"):
        Signer(cert, encrypted)
    with pytest.raises(SigningError, match="signing_cert: expected a readable file"):
        Signer(tmp_path / "missing.pem", key)
    with pytest.raises(SigningError, match="signing_cert: expected a PEM certificate"):
        Signer(key, key)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3650)
    with pytest.raises(SigningError, match="a certificate valid now"):
        Signer(cert, key, now=later)
    assert Signer(other_cert, other_key).fingerprint != Signer(cert, key).fingerprint


def _artifact(**changes: object) -> Artifact:
    base = Artifact(
        version="run-1.3",
        sha256="a" * 64,
        size=20480,
        manifest_sha256="b" * 64,
        manifest_size=3100,
        url="https://127.0.0.1:8781/models/run-1.3",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_artifact_helpers_sign_and_verify_what_the_desired_message_carries(
    signer: Signer, ca: FleetCA
) -> None:
    signed = sign_artifact(_artifact(), signer, signed_bytes=signed_bytes)
    assert signed.signer == signer.fingerprint and signed.signature is not None
    signed.check()  # still a valid desired-model Artifact
    verify_artifact(signed, signer.cert_pem, _ca_pem(ca), signed_bytes=signed_bytes)
    # Every field the signature covers, changed, fails; the URL is not covered.
    for change in (
        {"version": "run-1.4"},
        {"sha256": "c" * 64},
        {"size": 20481},
        {"manifest_sha256": "d" * 64},
        {"manifest_size": 3101},
    ):
        with pytest.raises(SignatureError) as caught:
            verify_artifact(
                dataclasses.replace(signed, **change),
                signer.cert_pem,
                _ca_pem(ca),
                signed_bytes=signed_bytes,
            )
        assert caught.value.reason == "signature", change
    moved = dataclasses.replace(signed, url="https://elsewhere:8781/models/run-1.3")
    verify_artifact(moved, signer.cert_pem, _ca_pem(ca), signed_bytes=signed_bytes)
    with pytest.raises(SignatureError) as unsigned:
        verify_artifact(_artifact(), signer.cert_pem, _ca_pem(ca), signed_bytes=signed_bytes)
    assert unsigned.value.reason == "unsigned"
    # Re-signing a signed artifact gives a valid signature again (random k: a new one).
    again = sign_artifact(signed, signer, signed_bytes=signed_bytes)
    verify_artifact(again, signer.cert_pem, _ca_pem(ca), signed_bytes=signed_bytes)
