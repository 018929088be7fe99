"""The desired-state message (docs/architecture.md, Model delivery): pure stdlib.

The coordinator publishes one retained message per device on ``<base>/desired``
(:attr:`agent.health.topics.Topics.desired`)::

    {"device_id": "pi-1", "seq": 7, "ts": 1765000000.0, "rollout": "r-3",
     "model": {"version": "run-20261207-1.3", "sha256": "<model.tflite>", "size": 20480,
               "manifest_sha256": "<manifest.json>", "manifest_size": 3100,
               "url": "https://laptop:8781/models/run-20261207-1.3",
               "signer": "<sha256 of the signer certificate's DER>",
               "signature": "<base64 ECDSA P-256 SHA-256 over signed_bytes(model)>"}}

The agent fetches ``{url}/manifest.json``, ``{url}/model.tflite`` and, when signed,
``{url}/signer.pem`` (a certificate the fleet CA issued for code signing). The signature covers
:func:`signed_bytes` (version and both digests and sizes), so the desired message is the signed
manifest of the delivery: a changed file, digest or version fails verification. ``model: null``
means no model is wanted (the device keeps serving what it has). ``seq`` grows with every change
the coordinator makes for this device; the agent ignores a message with a lower ``seq`` than one
it already acted on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

from agent.health.codec import SchemaError, bounds, decode, encode, parse_json

FORMAT: Final = "orchard-desired/1"
_POS: Final = bounds(low=0)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Artifact:
    """One model version as the coordinator serves it."""

    version: str
    sha256: str  # of model.tflite
    size: int = field(metadata=bounds(low=1))
    manifest_sha256: str
    manifest_size: int = field(metadata=bounds(low=1))
    url: str  # base URL: {url}/manifest.json, {url}/model.tflite, {url}/signer.pem
    signer: str | None = None  # sha256 (hex) of the signer certificate's DER
    signature: str | None = None  # base64 DER ECDSA signature over signed_bytes(self)

    def check(self) -> Artifact:
        for name in ("sha256", "manifest_sha256") + (("signer",) if self.signer else ()):
            value = getattr(self, name)
            if not _HEX64.match(value):
                raise SchemaError(f"desired.model.{name}", value, "64 lowercase hex digits")
        if not self.url.startswith(("http://", "https://")):
            raise SchemaError("desired.model.url", self.url, "an http:// or https:// URL")
        if (self.signer is None) != (self.signature is None):
            raise SchemaError("desired.model.signature", self.signature, "set together with signer")
        return self

    @property
    def signed(self) -> bool:
        return self.signature is not None


def signed_bytes(artifact: Artifact) -> bytes:
    """What the signature covers: the version, both digests and both sizes, one per line."""
    return "\n".join(
        (
            FORMAT,
            artifact.version,
            artifact.sha256,
            str(artifact.size),
            artifact.manifest_sha256,
            str(artifact.manifest_size),
        )
    ).encode()


@dataclass(frozen=True)
class Desired:
    """Retained on ``<base>/desired``; see the module docstring."""

    device_id: str
    seq: int = field(metadata=_POS)
    ts: float = field(metadata=_POS)
    model: Artifact | None = None
    rollout: str | None = None

    def to_json(self) -> str:
        return encode(self)

    @classmethod
    def validate(cls, payload: Any) -> Desired:
        desired = decode(cls, payload, "desired")
        if desired.model is not None:
            desired.model.check()
        return desired

    @classmethod
    def from_json(cls, data: str | bytes | bytearray) -> Desired:
        return cls.validate(parse_json(data, "desired"))
