"""The command message (docs/architecture.md, Remote configuration): pure stdlib.

The coordinator publishes one retained command per device on ``<base>/command``
(:attr:`agent.health.topics.Topics.command`)::

    {"device_id": "pi-1", "seq": 1765000000123, "issued": 1765000000.1,
     "expires": 1765003600.1, "kind": "config",
     "patch": {"sampling.interval_s": "5", "training.allowed_hours": "[6, 22]",
               "sensors.room.interval_s": "10", "labels.mqtt_topic": null},
     "signer_url": "https://laptop:8781/signer.pem",
     "signer": "<sha256 of the signer certificate's DER>",
     "signature": "<base64 ECDSA P-256 SHA-256 over signed_bytes(command)>"}

``patch`` maps a dotted key (``section.key``, ``sensors.NAME.key`` or a top-level key) to a
TOML value as text (so lists and strings keep their types), or ``null`` to remove the key
(back to its default). The agent refuses a command that is unsigned or wrongly signed (checked
against ``[models] trust_ca``, with the coordinator's signer certificate fetched from
``signer_url``, the artifact server's ``/signer.pem``, and cached by fingerprint),
expired (``expires`` < now), replayed or stale (``seq`` <= the last one it acted on, kept in
``<state_dir>/remote/``), or that touches a key in :data:`FORBIDDEN`. It answers every command
it acted on with an ``ack`` (:class:`agent.health.schema.Ack`) on ``<base>/ack``.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

from agent.health.codec import SchemaError, bounds, decode, encode, parse_json
from agent.software.manifest import SoftwareRef

FORMAT: Final = "orchard-command/1"
_POS: Final = bounds(low=0)
_KEY = re.compile(r"^[a-z_][a-z0-9_]*(\.[A-Za-z0-9_.-]+)*$")
MAX_PATCH: Final = 64
_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+!_-]{0,63}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

# Keys a command may never change: the board's identity and what it trusts. Prefix match on
# the dotted key ("mqtt.tls_" covers tls_ca, tls_cert, tls_key).
FORBIDDEN: Final[tuple[str, ...]] = (
    "device_id",
    "fleet",
    "state_dir",
    "models.trust_ca",
    "models.require_signed",
    "models.dir",
    "mqtt.host",
    "mqtt.port",
    "mqtt.username",
    "mqtt.password",
    "mqtt.tls_",
    "mqtt.topic_prefix",
    "federation.root_certificates",
    "federation.auth_",
    "federation.superlink",
    "federation.insecure",
    "http.token",
)


def forbidden(key: str) -> bool:
    return any(key == f or (f.endswith("_") and key.startswith(f)) for f in FORBIDDEN)


@dataclass(frozen=True)
class Command:
    """Retained on ``<base>/command``; see the module docstring."""

    device_id: str
    seq: int = field(metadata=_POS)
    issued: float = field(metadata=_POS)
    expires: float = field(metadata=_POS)
    kind: Literal["config", "update"]
    patch: dict[str, str | None] = field(default_factory=dict)
    update: SoftwareRef | None = None  # kind "update": the agent software release to install
    signer_url: str | None = None  # where the signer certificate is (the artifact server)
    signer: str | None = None
    signature: str | None = None

    def to_json(self) -> str:
        return encode(self)

    @classmethod
    def validate(cls, payload: Any) -> Command:
        command = decode(cls, payload, "command")
        if command.kind == "update":
            return _valid_update(command)
        if command.update is not None:
            raise SchemaError("command.update", "set", "no update in a config command")
        if not command.patch or len(command.patch) > MAX_PATCH:
            raise SchemaError("command.patch", command.patch, f"1 to {MAX_PATCH} keys")
        for key, value in command.patch.items():
            if not _KEY.match(key):
                raise SchemaError(f"command.patch.{key}", key, "a dotted key like section.key")
            if value is not None and not isinstance(value, str):
                raise SchemaError(f"command.patch.{key}", value, "a TOML value as text, or null")
        return _valid_common(command)

    @classmethod
    def from_json(cls, data: str | bytes | bytearray) -> Command:
        return cls.validate(parse_json(data, "command"))


def _valid_update(command: Command) -> Command:
    ref = command.update
    if ref is None:
        raise SchemaError("command.update", None, "the release to install")
    if command.patch:
        raise SchemaError("command.patch", command.patch, "no patch in an update command")
    if not _VERSION.match(ref.version):
        raise SchemaError("command.update.version", ref.version, "a version such as 0.2.0")
    if not ref.manifest_url.startswith(("http://", "https://")):
        raise SchemaError("command.update.manifest_url", ref.manifest_url, "an http(s) URL")
    if not _HEX64.match(ref.manifest_sha256):
        raise SchemaError(
            "command.update.manifest_sha256", ref.manifest_sha256, "64 lowercase hex digits"
        )
    return _valid_common(command)


def _valid_common(command: Command) -> Command:
    if command.expires <= command.issued:
        raise SchemaError("command.expires", command.expires, "a time after issued")
    if command.signer_url is not None and not command.signer_url.startswith(
        ("http://", "https://")
    ):
        raise SchemaError("command.signer_url", command.signer_url, "an http(s) URL")
    if (command.signer is None) != (command.signature is None):
        raise SchemaError("command.signature", command.signature, "set together with signer")
    return command


def signed_bytes(command: Command) -> bytes:
    """What the signature covers: every field but ``signer`` and ``signature``, canonical JSON."""
    body = {k: v for k, v in asdict(command).items() if k not in ("signer", "signature")}
    if body.get("update") is None:  # config commands: the bytes they had before updates existed
        body.pop("update", None)
    return (FORMAT + "\n" + json.dumps(body, sort_keys=True, separators=(",", ":"))).encode()
