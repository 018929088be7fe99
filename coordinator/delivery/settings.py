"""``[delivery]`` in coordinator.toml: the artifact server boards fetch models from, and the signer.

Every key has a default; without the table the server listens on ``http://127.0.0.1:8781`` and
models go out unsigned::

    [delivery]
    host = "0.0.0.0"                       # default 127.0.0.1 (this machine only)
    port = 8781
    base_url = "https://coordinator.local:8781"   # what boards fetch; default scheme://host:port
    tls_cert = "~/.orchard/ca/server/coordinator.pem"   # HTTPS (with tls_key)
    tls_key = "~/.orchard/ca/server/coordinator.key"
    tls_ca = "~/.orchard/ca/ca.pem"        # mutual TLS: a client certificate from this CA
    signing_cert = "~/.orchard/ca/signers/coordinator.pem"   # sign models (with signing_key)
    signing_key = "~/.orchard/ca/signers/coordinator.key"

Certificates, keys and the signer are loaded once while reading, so ``orchard-coordinator
check-config`` names a key that does not match its certificate or a signer without codeSigning.
"""

from __future__ import annotations

import datetime as dt
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from coordinator.delivery.errors import DeliveryError
from coordinator.options import Section
from orchard_common.errors import SigningError
from orchard_common.signing import Signer

DEFAULT_PORT: Final = 8781
_URL = re.compile(r"^(https?)://[^\s/?#]+(/[^\s?#]*)?$")
_WILDCARD = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class DeliverySettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    base_url: str | None = None  # None: scheme://host:port
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None  # set: mutual TLS, boards present a certificate from this CA
    signing_cert: Path | None = None
    signing_key: Path | None = None

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def url(self) -> str:
        """Where boards fetch from: ``base_url``, or derived from the scheme, host and port."""
        if self.base_url is not None:
            return self.base_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def signer(self, *, now: dt.datetime | None = None) -> Signer | None:
        """The loaded signer, or ``None`` when ``signing_cert`` is not set."""
        if self.signing_cert is None or self.signing_key is None:
            return None
        try:
            return Signer(self.signing_cert, self.signing_key, now=now)
        except SigningError as exc:
            raise DeliveryError(f"delivery.{exc}") from None

    @classmethod
    def from_section(cls, sec: Section) -> DeliverySettings:
        d = cls()
        s = cls(
            host=sec.get_str("host", d.host),
            port=sec.get_int("port", d.port, low=1, high=65535),
            base_url=sec.get_str("base_url", None),
            tls_cert=sec.get_path("tls_cert"),
            tls_key=sec.get_path("tls_key"),
            tls_ca=sec.get_path("tls_ca"),
            signing_cert=sec.get_path("signing_cert"),
            signing_key=sec.get_path("signing_key"),
        )
        sec.done()
        _check_tls(sec, s)
        _check_url(sec, s)
        _check_signer(sec, s)
        return s


def _check_tls(sec: Section, s: DeliverySettings) -> None:
    if sec.errors_for("tls_"):
        return
    if (s.tls_cert is None) != (s.tls_key is None):
        sec.fail("tls_key", str(s.tls_key) if s.tls_key else None, "tls_cert and tls_key together")
        return
    if s.tls_ca is not None and s.tls_cert is None:
        sec.fail("tls_cert", None, "a server certificate (with tls_key) when tls_ca is set")
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if s.tls_cert is not None:
        try:
            context.load_cert_chain(s.tls_cert, s.tls_key)
        except (ssl.SSLError, OSError) as exc:
            sec.fail("tls_key", str(s.tls_key), f"the PEM private key of tls_cert ({exc})")
    if s.tls_ca is not None:
        try:
            context.load_verify_locations(cafile=s.tls_ca)
        except (ssl.SSLError, OSError) as exc:
            sec.fail("tls_ca", str(s.tls_ca), f"a PEM CA certificate ({exc})")


def _check_url(sec: Section, s: DeliverySettings) -> None:
    if s.base_url is None:
        if s.host in _WILDCARD:
            sec.fail(
                "base_url",
                None,
                f"a URL boards can reach (e.g. 'https://coordinator.local:{s.port}') "
                f"when host is {s.host!r}",
            )
        return
    match = _URL.match(s.base_url)
    if match is None:
        sec.fail("base_url", s.base_url, "an http:// or https:// URL without query or fragment")
    elif match.group(1) != ("https" if s.tls else "http"):
        sec.fail(
            "base_url",
            s.base_url,
            "an https:// URL (tls_cert is set)" if s.tls else "an http:// URL (no tls_cert)",
        )


def _check_signer(sec: Section, s: DeliverySettings) -> None:
    if sec.errors_for("signing_"):
        return
    if (s.signing_cert is None) != (s.signing_key is None):
        sec.fail(
            "signing_key",
            str(s.signing_key) if s.signing_key else None,
            "signing_cert and signing_key together",
        )
        return
    if s.signing_cert is not None and s.signing_key is not None:
        try:
            Signer(s.signing_cert, s.signing_key)
        except SigningError as exc:
            sec.fail(exc.field, exc.value, exc.expected)
