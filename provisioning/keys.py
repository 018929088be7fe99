"""Key material: a fleet CA, device certificates, SuperNode key pairs, MQTT password hashes.

Everything here is pure (bytes in, bytes out) on top of ``cryptography``; ``ca.py`` decides
where it is stored.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_NO_PASSWORD = serialization.NoEncryption()


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes
    public: bytes  # PEM certificate, or an OpenSSH public key line


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Orchard fleet"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, _NO_PASSWORD
    )


_SIGN_ONLY = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def new_ca(common_name: str, now: dt.datetime, days: int = 3650) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM))


def issue_cert(
    ca: KeyPair,
    common_name: str,
    now: dt.datetime,
    *,
    server_names: tuple[str, ...] = (),
    code_signing: bool = False,
    days: int = 1095,
) -> tuple[KeyPair, int]:
    """A leaf certificate signed by ``ca``: a client cert, a server cert with SANs, or (with
    ``code_signing``) a certificate that may only sign (the coordinator's model signer)."""
    ca_key = serialization.load_pem_private_key(ca.private_pem, None)
    ca_cert = x509.load_pem_x509_certificate(ca.public)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an EC key")
    if code_signing and server_names:
        raise ValueError("a code-signing certificate has no server names")
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_names else ExtendedKeyUsageOID.CLIENT_AUTH
    if code_signing:
        usage = ExtendedKeyUsageOID.CODE_SIGNING
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if server_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_san(name) for name in server_names]), critical=False
        )
    if code_signing:
        builder = builder.add_extension(_SIGN_ONLY, critical=True)
    cert = builder.sign(ca_key, hashes.SHA256())
    pair = KeyPair(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM))
    return pair, cert.serial_number


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def crl(ca: KeyPair, revoked: dict[int, dt.datetime], now: dt.datetime) -> bytes:
    """A CRL listing ``revoked`` serials (Mosquitto's ``crlfile``)."""
    ca_key = serialization.load_pem_private_key(ca.private_pem, None)
    ca_cert = x509.load_pem_x509_certificate(ca.public)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an EC key")
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=365))
    )
    for serial, when in sorted(revoked.items()):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def supernode_keys(comment: str) -> KeyPair:
    """A Flower SuperNode authentication key pair: ECDSA P-384 in OpenSSH format.

    Same as ``ssh-keygen -t ecdsa -b 384``: ``flower-supernode --auth-supernode-private-key``
    reads the private half, ``flwr supernode register`` takes the public one.
    """
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, _NO_PASSWORD
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return KeyPair(private, public + b" " + comment.encode() + b"\n")


def new_password() -> str:
    return secrets.token_urlsafe(24)


def mosquitto_hash(password: str, iterations: int = 101) -> str:
    """A ``mosquitto_passwd`` line value: ``$7$`` = PBKDF2-HMAC-SHA512, 12-byte salt."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def fingerprint(public: bytes) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(public.strip()).digest()).decode().rstrip(
        "="
    )
