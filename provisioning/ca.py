"""The coordinator-side fleet CA and the inventory of what was issued to which device.

Layout of the CA directory (private parts 0600, directories 0700)::

    ca.pem  ca.key                 the fleet CA (MQTT TLS, Flower SuperLink TLS)
    crl.pem                        revoked device certificates (Mosquitto ``crlfile``)
    devices/<id>.json              inventory: what was issued, when, fingerprints, revoked_at
    devices/<id>/                  the device's secrets, kept so re-provisioning is idempotent
    supernodes/<id>.pub            SuperNode public keys: ``flwr supernode register <file>``
                                   (flwr 1.41 dropped the SuperLink's key-list CSV; keys are
                                   registered through the Control API, revoked with
                                   ``flwr supernode unregister <node-id>``)
    mosquitto/passwd               ``password_file`` for devices using MQTT username/password
    server/<name>.pem|.key         TLS server certificates (SuperLink, Mosquitto listener)
    clients/<name>.pem|.key        client certificates that are not devices (the coordinator's
                                   own MQTT health ingest)
    signers/<name>.pem|.key        code-signing certificates: the coordinator signs the models it
                                   delivers, boards check them against ca.pem
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from orchard_common.errors import SigningError
from orchard_common.signing import Signer
from provisioning import keys
from provisioning.errors import CaError, InvalidOption
from provisioning.options import DEVICE_ID

logger = logging.getLogger(__name__)
SIGNER_RENEW_DAYS = 30  # signer_cert replaces a certificate that expires sooner than this
Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class DeviceIdentity:
    """What one device receives; the private parts never leave the CA dir except to it."""

    device_id: str
    ca_pem: bytes
    supernode_private: bytes
    supernode_public: bytes
    mqtt_cert: bytes | None = None
    mqtt_key: bytes | None = None
    mqtt_username: str | None = None
    mqtt_password: str | None = None


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


class FleetCA:
    def __init__(self, directory: Path, clock: Clock = _utcnow) -> None:
        self.dir = Path(directory)
        self._clock = clock

    @classmethod
    def init(
        cls, directory: Path, name: str = "Orchard fleet CA", clock: Clock = _utcnow
    ) -> FleetCA:
        ca = cls(directory, clock)
        if (ca.dir / "ca.key").exists():
            raise CaError(f"{ca.dir} already holds a CA (ca.key); refusing to overwrite it")
        ca.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(ca.dir, 0o700)
        pair = keys.new_ca(name, clock())
        _write(ca.dir / "ca.key", pair.private_pem, 0o600)
        _write(ca.dir / "ca.pem", pair.public, 0o644)
        ca._refresh_lists()
        logger.info("created fleet CA in %s", ca.dir)
        return ca

    @classmethod
    def open(cls, directory: Path, clock: Clock = _utcnow) -> FleetCA:
        ca = cls(directory, clock)
        if not (ca.dir / "ca.key").is_file() or not (ca.dir / "ca.pem").is_file():
            raise CaError(
                f"{ca.dir} is not a fleet CA (no ca.key/ca.pem); "
                f"create one with: orchard-provision ca init --dir {ca.dir}"
            )
        return ca

    def _pair(self) -> keys.KeyPair:
        return keys.KeyPair((self.dir / "ca.key").read_bytes(), (self.dir / "ca.pem").read_bytes())

    def record(self, device_id: str) -> dict[str, object] | None:
        path = self.dir / "devices" / f"{device_id}.json"
        if not path.is_file():
            return None
        try:
            data: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CaError(f"inventory record {path} is unreadable: {exc}") from exc
        return data

    def records(self) -> list[dict[str, object]]:
        found = (self.record(p.stem) for p in sorted((self.dir / "devices").glob("*.json")))
        return [r for r in found if r is not None]

    def issue(
        self,
        device_id: str,
        *,
        mqtt: str = "cert",
        mqtt_username: str | None = None,
        mqtt_password: str | None = None,
        reissue: bool = False,
    ) -> DeviceIdentity:
        """Issue (or, when already issued, return) ``device_id``'s identity.

        ``mqtt``: ``"cert"`` for a CA-signed client certificate, ``"password"`` for a username
        (default: the device id) and password (generated unless given), ``"none"``.
        """
        if not DEVICE_ID.match(device_id):
            raise InvalidOption("device_id", device_id, "letters, digits, '.', '_' or '-'")
        if mqtt not in ("cert", "password", "none"):
            raise InvalidOption("mqtt", mqtt, "one of 'cert', 'password', 'none'")
        existing = self.record(device_id)
        if existing is not None and not reissue:
            if existing.get("revoked_at"):
                raise CaError(f"device {device_id!r} was revoked; provision it with --reissue")
            identity = self._load(device_id)
            if identity is not None and self._matches(identity, mqtt):
                return identity
        return self._issue(device_id, mqtt, mqtt_username, mqtt_password)

    @staticmethod
    def _matches(identity: DeviceIdentity, mqtt: str) -> bool:
        kinds = {
            "cert": identity.mqtt_cert is not None,
            "password": identity.mqtt_password is not None,
        }
        return kinds.get(mqtt, identity.mqtt_cert is None and identity.mqtt_password is None)

    def _issue(
        self, device_id: str, mqtt: str, username: str | None, password: str | None
    ) -> DeviceIdentity:
        now = self._clock()
        pair = self._pair()
        node = keys.supernode_keys(f"orchard:{device_id}")
        identity = DeviceIdentity(device_id, pair.public, node.private_pem, node.public)
        record: dict[str, object] = {
            "device_id": device_id,
            "issued_at": now.isoformat(),
            "revoked_at": None,
            "supernode": {
                "public_key": node.public.decode().strip(),
                "fingerprint": keys.fingerprint(node.public),
            },
            "mqtt": {"kind": mqtt},
        }
        if mqtt == "cert":
            leaf, serial = keys.issue_cert(pair, device_id, now)
            identity = DeviceIdentity(
                **{**asdict(identity), "mqtt_cert": leaf.public, "mqtt_key": leaf.private_pem}
            )
            record["mqtt"] = {"kind": "cert", "serial": serial, "common_name": device_id}
        elif mqtt == "password":
            user, pw = username or device_id, password or keys.new_password()
            identity = DeviceIdentity(
                **{**asdict(identity), "mqtt_username": user, "mqtt_password": pw}
            )
            record["mqtt"] = {
                "kind": "password",
                "username": user,
                "password_hash": keys.mosquitto_hash(pw),
            }
        self._store(identity, record)
        logger.info("issued identity for %s (mqtt=%s)", device_id, mqtt)
        return identity

    def _store(self, identity: DeviceIdentity, record: dict[str, object]) -> None:
        secret_dir = self.dir / "devices" / identity.device_id
        secret_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        blobs = {k: v for k, v in asdict(identity).items() if k not in ("device_id", "ca_pem")}
        for name, value in blobs.items():
            path = secret_dir / name
            if value is None:
                path.unlink(missing_ok=True)
            else:
                _write(path, value if isinstance(value, bytes) else value.encode(), 0o600)
        _write(
            self.dir / "supernodes" / f"{identity.device_id}.pub", identity.supernode_public, 0o644
        )
        _write(
            self.dir / "devices" / f"{identity.device_id}.json",
            json.dumps(record, indent=2).encode() + b"\n",
            0o644,
        )
        self._refresh_lists()

    def _load(self, device_id: str) -> DeviceIdentity | None:
        secret_dir = self.dir / "devices" / device_id
        if not (secret_dir / "supernode_private").is_file():
            return None

        def read(name: str) -> bytes | None:
            path = secret_dir / name
            return path.read_bytes() if path.is_file() else None

        user, pw = read("mqtt_username"), read("mqtt_password")
        return DeviceIdentity(
            device_id=device_id,
            ca_pem=(self.dir / "ca.pem").read_bytes(),
            supernode_private=(secret_dir / "supernode_private").read_bytes(),
            supernode_public=(secret_dir / "supernode_public").read_bytes(),
            mqtt_cert=read("mqtt_cert"),
            mqtt_key=read("mqtt_key"),
            mqtt_username=user.decode() if user else None,
            mqtt_password=pw.decode() if pw else None,
        )

    def revoke(self, device_id: str) -> dict[str, object]:
        record = self.record(device_id)
        if record is None:
            raise CaError(f"no device {device_id!r} in {self.dir / 'devices'}")
        if not record.get("revoked_at"):
            record["revoked_at"] = self._clock().isoformat()
            _write(
                self.dir / "devices" / f"{device_id}.json",
                json.dumps(record, indent=2).encode() + b"\n",
                0o644,
            )
        secret_dir = self.dir / "devices" / device_id
        for path in secret_dir.glob("*"):
            path.unlink()
        if secret_dir.is_dir():
            secret_dir.rmdir()
        (self.dir / "supernodes" / f"{device_id}.pub").unlink(missing_ok=True)
        self._refresh_lists()
        logger.info("revoked %s", device_id)
        return record

    def server_cert(self, name: str, hosts: tuple[str, ...]) -> tuple[Path, Path]:
        """A TLS server certificate for the SuperLink / Mosquitto on the coordinator."""
        if not hosts:
            raise InvalidOption("host", hosts, "at least one DNS name or IP address")
        leaf, _ = keys.issue_cert(self._pair(), name, self._clock(), server_names=hosts)
        cert, key = self.dir / "server" / f"{name}.pem", self.dir / "server" / f"{name}.key"
        _write(key, leaf.private_pem, 0o600)
        _write(cert, leaf.public, 0o644)
        return cert, key

    def client_cert(self, name: str) -> tuple[Path, Path]:
        """A TLS client certificate that is not a device's: the coordinator's MQTT ingest.

        Mosquitto with ``require_certificate true`` wants one from every client; with
        ``use_identity_as_username true`` its common name ``name`` is the MQTT user name (for
        an ACL such as ``user coordinator`` / ``topic read orchard/#``).
        """
        if not DEVICE_ID.match(name):
            raise InvalidOption("name", name, "letters, digits, '.', '_' or '-'")
        leaf, _ = keys.issue_cert(self._pair(), name, self._clock())
        cert, key = self.dir / "clients" / f"{name}.pem", self.dir / "clients" / f"{name}.key"
        _write(key, leaf.private_pem, 0o600)
        _write(cert, leaf.public, 0o644)
        logger.info("issued client certificate %s", cert)
        return cert, key

    def signer_cert(self, name: str, *, reissue: bool = False) -> tuple[Path, Path]:
        """The code-signing certificate ``signers/<name>.pem`` (0644) and its key (0600).

        Extended key usage codeSigning only, so it cannot serve or join TLS. Idempotent: a
        certificate already there is kept while it is this CA's, matches its key and is valid
        for another :data:`SIGNER_RENEW_DAYS` days, because its fingerprint travels in every
        retained desired-model message (a new one makes boards fetch and check it afresh).
        ``reissue`` replaces it anyway.
        """
        if not DEVICE_ID.match(name):
            raise InvalidOption("name", name, "letters, digits, '.', '_' or '-'")
        cert, key = self.dir / "signers" / f"{name}.pem", self.dir / "signers" / f"{name}.key"
        if not reissue and self._usable_signer(cert, key):
            logger.info("kept signer certificate %s", cert)
            return cert, key
        leaf, _ = keys.issue_cert(self._pair(), name, self._clock(), code_signing=True)
        _write(key, leaf.private_pem, 0o600)
        _write(cert, leaf.public, 0o644)
        logger.info("issued signer certificate %s", cert)
        return cert, key

    def _usable_signer(self, cert: Path, key: Path) -> bool:
        if not (cert.is_file() and key.is_file()):
            return False
        try:
            Signer(cert, key, now=self._clock() + dt.timedelta(days=SIGNER_RENEW_DAYS))
            x509.load_pem_x509_certificate(cert.read_bytes()).verify_directly_issued_by(
                x509.load_pem_x509_certificate(self._pair().public)
            )
        except (SigningError, ValueError, TypeError, InvalidSignature) as exc:
            logger.warning("replacing signer certificate %s: %s", cert, exc)
            return False
        return True

    def refresh_crl(self) -> dt.datetime:
        """Re-sign the CRL (and the other derived lists); returns when the new CRL expires.

        Mosquitto with ``crlfile`` refuses every client once the CRL is past its next update
        (clients see "certificate expired"); any issue or revoke also re-signs it.
        """
        self._refresh_lists()
        crl = x509.load_pem_x509_crl((self.dir / "crl.pem").read_bytes())
        expires = crl.next_update_utc
        assert expires is not None  # keys.crl always sets it
        return expires

    def _refresh_lists(self) -> None:
        """Rewrite the derived files (CRL, SuperLink key list, Mosquitto passwd) from records."""
        active = [r for r in self.records() if not r.get("revoked_at")]
        revoked: dict[int, dt.datetime] = {}
        passwd = []
        for r in self.records():
            mqtt = r.get("mqtt")
            mqtt = mqtt if isinstance(mqtt, dict) else {}
            if r.get("revoked_at") and mqtt.get("kind") == "cert":
                revoked[int(mqtt["serial"])] = dt.datetime.fromisoformat(str(r["revoked_at"]))
        for r in active:
            mqtt = r.get("mqtt")
            if isinstance(mqtt, dict) and mqtt.get("kind") == "password":
                passwd.append(f"{mqtt['username']}:{mqtt['password_hash']}")
        _write(self.dir / "crl.pem", keys.crl(self._pair(), revoked, self._clock()), 0o644)
        _write(self.dir / "mosquitto" / "passwd", "".join(p + "\n" for p in passwd).encode(), 0o640)
