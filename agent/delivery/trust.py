"""The fleet CA a board trusts to sign its models (``[models] trust_ca``).

Imports ``cryptography`` (through :mod:`orchard_common.signing`) only when the agent was
provisioned with an identity, i.e. when ``trust_ca`` is set.
"""

from __future__ import annotations

from pathlib import Path

from agent.delivery.desired import Artifact, signed_bytes
from agent.delivery.service import SignatureCheck
from agent.errors import DeliveryError


def signature_check(ca_path: Path) -> SignatureCheck:
    """A check that refuses a delivery whose signature does not hold against ``ca_path``.

    The CA file is read at each check, so a CA renewed by provisioning is taken without a
    restart.
    """
    from orchard_common.errors import SignatureError
    from orchard_common.signing import verify_artifact

    def check(artifact: Artifact, signer_pem: bytes) -> None:
        try:
            ca_pem = ca_path.read_bytes()
        except OSError as exc:
            raise DeliveryError(f"[models] trust_ca {ca_path}: {exc.strerror}") from None
        try:
            verify_artifact(artifact, signer_pem, ca_pem, signed_bytes=signed_bytes)
        except SignatureError as exc:
            raise DeliveryError(
                f"model {artifact.version} refused ({exc.reason}): {exc}", refused=True
            ) from None

    return check
