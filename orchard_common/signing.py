"""Signed models: the coordinator signs what it delivers, a board checks it against its fleet CA.

The fleet CA issues the coordinator a code-signing certificate (``orchard-provision ca
signer-cert NAME``: EC P-256, extended key usage codeSigning only). The coordinator signs each
delivered model's ``signed_bytes`` (agent/delivery/desired.py: version, both digests, both
sizes) with its key; the board fetches the signer certificate beside the model and accepts it
only when everything holds (docs/tls.md, Signed models)::

    signer = Signer(Path("signers/coordinator.pem"), Path("signers/coordinator.key"))
    signature = signer.sign(data)            # base64 DER ECDSA P-256 / SHA-256
    verify(data, signature, signer.cert_pem, ca_pem, expected_fingerprint=signer.fingerprint)

A signature is ``base64(DER ECDSA-Sig-Value)``; a fingerprint is the lowercase hex sha256 of the
certificate's DER. :func:`verify` raises :class:`SignatureError` whose ``reason`` names the
check that failed (``orchard_common.errors.REASONS``). :func:`sign_artifact` and
:func:`verify_artifact` do the same for a delivery ``Artifact``; orchard_common imports none of
Orchard's packages (tests/test_layers.py), so the caller passes ``signed_bytes`` in.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from orchard_common.errors import SignatureError, SigningError

_ALGORITHM = ec.ECDSA(hashes.SHA256())


def _utc(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    return now if now.tzinfo is not None else now.replace(tzinfo=dt.UTC)


def cert_fingerprint(cert: x509.Certificate) -> str:
    """The lowercase hex sha256 of ``cert``'s DER (what ``Artifact.signer`` holds)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _code_signing(cert: x509.Certificate) -> bool:
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.CODE_SIGNING in usage


def _p256(key: Any) -> bool:
    return isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) and isinstance(
        key.curve, ec.SECP256R1
    )


class Signer:
    """A code-signing certificate and its EC P-256 key, loaded from PEM files and checked.

    Refuses (``SigningError`` naming ``signing_cert`` or ``signing_key``) a file that is not
    PEM, an encrypted key, a key that is not EC P-256 or not the certificate's, a certificate
    without the codeSigning extended key usage, or one not valid at ``now``.
    """

    def __init__(self, cert_path: Path, key_path: Path, *, now: dt.datetime | None = None) -> None:
        self.cert_path = Path(cert_path)
        self.key_path = Path(key_path)
        self.cert_pem = _read(self.cert_path, "signing_cert")
        try:
            cert = x509.load_pem_x509_certificate(self.cert_pem)
        except ValueError:
            raise SigningError("signing_cert", str(cert_path), "a PEM certificate") from None
        try:
            key = serialization.load_pem_private_key(_read(self.key_path, "signing_key"), None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise SigningError(
                "signing_key", str(key_path), "an unencrypted PEM private key"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not _p256(key):
            raise SigningError("signing_key", str(key_path), "an EC P-256 private key")
        der = serialization.Encoding.DER
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
            raise SigningError("signing_key", str(key_path), f"the private key of {cert_path}")
        if not _code_signing(cert):
            raise SigningError(
                "signing_cert",
                str(cert_path),
                "a certificate with the codeSigning extended key usage "
                "(orchard-provision ca signer-cert NAME)",
            )
        moment = _utc(now)
        if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
            raise SigningError(
                "signing_cert",
                str(cert_path),
                f"a certificate valid now ({moment:%Y-%m-%d %H:%M} UTC); it is valid from "
                f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}",
            )
        self._key = key
        self.fingerprint = cert_fingerprint(cert)
        self.not_valid_after = cert.not_valid_after_utc

    def sign(self, data: bytes) -> str:
        """``base64`` of the DER ECDSA P-256 / SHA-256 signature over ``data``."""
        return base64.b64encode(self._key.sign(data, _ALGORITHM)).decode("ascii")

    def __repr__(self) -> str:
        return f"Signer({str(self.cert_path)!r}, fingerprint={self.fingerprint[:16]}...)"


def _read(path: Path, field: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SigningError(field, str(path), f"a readable file ({exc.strerror})") from None


def _load_cert(pem: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except (ValueError, TypeError):
        shown = pem[:40] if isinstance(pem, bytes) else type(pem).__name__
        raise SignatureError(
            "malformed", f"{what}: expected a PEM certificate. Received: {what}={shown!r}"
        ) from None


def _decode_signature(signature_b64: str) -> bytes:
    try:
        raw = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raw = b""
    if not raw:
        shown = signature_b64[:40] if isinstance(signature_b64, str) else signature_b64
        raise SignatureError(
            "malformed", f"signature: expected base64 (DER ECDSA). Received: signature={shown!r}"
        )
    return raw


def verify(
    data: bytes,
    signature_b64: str,
    signer_cert_pem: bytes,
    ca_pem: bytes,
    *,
    expected_fingerprint: str,
    now: dt.datetime | None = None,
) -> None:
    """Accept ``signature_b64`` over ``data`` or raise :class:`SignatureError`.

    In this order: the signature is base64 and both certificates PEM (``malformed``); the signer
    certificate is the one named (``fingerprint``), issued directly by the CA in ``ca_pem``
    (``issuer``), it and the CA are valid at ``now`` (``expired``, ``not_yet_valid``; default:
    the current time), it may sign code (``usage``), its key is EC P-256 (``key``) and the
    signature matches ``data`` (``signature``).
    """
    signature = _decode_signature(signature_b64)
    cert = _load_cert(signer_cert_pem, "signer certificate")
    ca = _load_cert(ca_pem, "CA certificate")
    actual = cert_fingerprint(cert)
    if not hmac.compare_digest(actual, str(expected_fingerprint).lower()):
        raise SignatureError(
            "fingerprint",
            f"signer: expected the certificate with sha256 {expected_fingerprint}. "
            f"Received: fingerprint={actual}",
        )
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        raise SignatureError(
            "issuer",
            f"signer: expected a certificate issued by the fleet CA "
            f"{ca.subject.rfc4514_string()!r}. Received: issuer={cert.issuer.rfc4514_string()!r}",
        ) from None
    moment = _utc(now)
    for what, c in (("signer", cert), ("CA", ca)):
        if moment < c.not_valid_before_utc:
            raise SignatureError(
                "not_yet_valid",
                f"{what}: expected a certificate valid at {moment:%Y-%m-%d %H:%M} UTC. "
                f"Received: not_valid_before={c.not_valid_before_utc:%Y-%m-%d %H:%M}",
            )
        if moment > c.not_valid_after_utc:
            raise SignatureError(
                "expired",
                f"{what}: expected a certificate valid at {moment:%Y-%m-%d %H:%M} UTC. "
                f"Received: not_valid_after={c.not_valid_after_utc:%Y-%m-%d %H:%M}",
            )
    if not _code_signing(cert):
        raise SignatureError(
            "usage",
            "signer: expected a certificate with the codeSigning extended key usage. "
            f"Received: subject={cert.subject.rfc4514_string()!r}",
        )
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not _p256(key):
        curve = getattr(getattr(key, "curve", None), "name", type(key).__name__)
        raise SignatureError("key", f"signer: expected an EC P-256 key. Received: key={curve}")
    try:
        key.verify(signature, data, _ALGORITHM)
    except InvalidSignature:
        raise SignatureError(
            "signature",
            f"signature: expected an ECDSA P-256 signature over these bytes by {actual[:16]}... "
            "Received: one that does not match (tampered data, or another key)",
        ) from None


class Signable(Protocol):
    """What :func:`sign_artifact` needs: a frozen dataclass with these two fields."""

    @property
    def signer(self) -> str | None: ...

    @property
    def signature(self) -> str | None: ...


S = TypeVar("S", bound=Signable)


def sign_artifact(artifact: S, signer: Signer, *, signed_bytes: Callable[[S], bytes]) -> S:
    """``artifact`` with ``signer`` (the fingerprint) and ``signature`` over ``signed_bytes``.

    ``signed_bytes`` is ``agent.delivery.desired.signed_bytes``; it covers neither field, so an
    already signed artifact is signed afresh.
    """
    signature = signer.sign(signed_bytes(artifact))
    signed: S = dataclasses.replace(  # type: ignore[type-var]
        artifact, signer=signer.fingerprint, signature=signature
    )
    return signed


def verify_artifact(
    artifact: S,
    signer_pem: bytes,
    ca_pem: bytes,
    *,
    signed_bytes: Callable[[S], bytes],
    now: dt.datetime | None = None,
) -> None:
    """:func:`verify` ``artifact``'s signature with the fetched ``signer_pem`` and ``ca_pem``.

    An unsigned artifact is refused with reason ``unsigned``: call this only when a signature
    is required or present.
    """
    if artifact.signature is None or artifact.signer is None:
        raise SignatureError(
            "unsigned",
            "signature: expected a signed model. Received: signature=None",
        )
    verify(
        signed_bytes(artifact),
        artifact.signature,
        signer_pem,
        ca_pem,
        expected_fingerprint=artifact.signer,
        now=now,
    )
