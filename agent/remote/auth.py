"""Is a command the coordinator's? Its signature, checked against ``[models] trust_ca``.

The signer certificate (issued by the fleet CA for code signing, ``orchard-provision ca
signer-cert``) is fetched from the command's ``signer_url`` (the artifact server's
``/signer.pem``) with the board's MQTT TLS settings, and kept by fingerprint in
``<state_dir>/remote/signers/`` once a command it signed verified. ``cryptography`` is imported
only here, when a signed command arrives on a board with a CA.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path

from agent.delivery.fetch import Fetcher
from agent.errors import DeliveryError
from agent.remote.command import Command, signed_bytes
from agent.remote.patch import Refused

logger = logging.getLogger(__name__)

NEEDS_CA = "remote configuration needs a board provisioned with the fleet CA ([models] trust_ca)"
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


class SignerUnavailable(Refused):
    """The signer certificate could not be fetched: worth another try later."""


class CommandAuth:
    def __init__(self, trust_ca: Path | None, cache: Path, fetcher: Fetcher) -> None:
        self.trust_ca = trust_ca
        self.cache = cache
        self.fetcher = fetcher

    def check(self, command: Command, now: float) -> None:
        """Return when ``command`` is signed by a code-signing certificate of the fleet CA
        valid at ``now`` (the board's clock); raise :class:`Refused` naming why not."""
        if self.trust_ca is None:
            raise Refused(NEEDS_CA)
        if command.signature is None or command.signer is None:
            raise Refused("command: expected a signed command. Received: signature=None")
        signer = command.signer.lower()
        if not _FINGERPRINT.match(signer):
            raise Refused(
                f"command.signer: expected the sha256 of a certificate (64 hex digits). "
                f"Received: signer={command.signer[:80]!r}"
            )
        try:
            ca_pem = self.trust_ca.read_bytes()
        except OSError as exc:
            raise Refused(f"[models] trust_ca {self.trust_ca}: {exc.strerror}") from None
        cached = self.cache / f"{signer}.pem"
        pem = cached.read_bytes() if cached.is_file() else self._fetch(command, signer)

        from orchard_common.errors import SignatureError
        from orchard_common.signing import verify_artifact

        try:
            verify_artifact(
                command,
                pem,
                ca_pem,
                signed_bytes=signed_bytes,
                now=dt.datetime.fromtimestamp(now, dt.UTC),
            )
        except SignatureError as exc:
            raise Refused(
                f"command {command.seq} not signed by the fleet ({exc.reason}): {exc}"
            ) from None
        if not cached.is_file():
            from models.manifest import write_atomic

            write_atomic(cached, pem)

    def signer_pem(self, command: Command) -> bytes:
        """The certificate that signed ``command`` (cached by :meth:`check`)."""
        cached = self.cache / f"{(command.signer or '').lower()}.pem"
        try:
            return cached.read_bytes()
        except OSError:
            return self._fetch(command, (command.signer or "").lower())

    def _fetch(self, command: Command, signer: str) -> bytes:
        if command.signer_url is None:
            raise Refused(
                f"command.signer_url: expected where to fetch the signer certificate "
                f"{signer[:16]}... from. Received: signer_url=None"
            )
        self.cache.mkdir(parents=True, exist_ok=True)
        part = self.cache / f".{signer}.fetch"
        try:
            self.fetcher.fetch(command.signer_url, part, size=None, sha256=None)
            return part.read_bytes()
        except (DeliveryError, OSError) as exc:
            raise SignerUnavailable(f"cannot fetch the signer certificate: {exc}") from None
        finally:
            part.unlink(missing_ok=True)
