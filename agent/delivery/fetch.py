"""Fetch one file of a desired model over HTTP(S), bounded in size and time, checked by digest.

The coordinator's artifact server (``coordinator/delivery/server.py``) serves
``{url}/manifest.json``, ``{url}/model.tflite`` and ``{url}/signer.pem``. With ``[mqtt]``
TLS the agent uses the same fleet CA to check the server and its MQTT client certificate to
identify itself (mutual TLS), so a fetch needs nothing more than the board already has.

:class:`HttpFetcher` is the real transport; tests inject another :class:`Fetcher`.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Protocol

from agent.errors import DeliveryError

logger = logging.getLogger(__name__)

CHUNK = 64 * 1024
MAX_SMALL_FILE = 1024 * 1024  # signer.pem: a certificate is a few KB


class Fetcher(Protocol):
    def fetch(self, url: str, dest: Path, *, size: int | None, sha256: str | None) -> None:
        """Write ``url``'s body to ``dest``; ``DeliveryError`` when it fails or differs."""
        ...


class HttpFetcher:
    """``urllib`` with a timeout per read, the fleet CA and the device's client certificate."""

    def __init__(
        self,
        *,
        timeout_s: float = 30.0,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self._context: ssl.SSLContext | None = None
        if tls_ca or tls_cert:
            context = ssl.create_default_context(cafile=tls_ca)
            if tls_cert:
                context.load_cert_chain(tls_cert, tls_key)
            self._context = context

    def fetch(self, url: str, dest: Path, *, size: int | None, sha256: str | None) -> None:
        limit = size if size is not None else MAX_SMALL_FILE
        digest = hashlib.sha256()
        received = 0
        tmp = dest.with_name(dest.name + ".part")
        try:
            with (
                urllib.request.urlopen(url, timeout=self.timeout_s, context=self._context) as resp,
                open(tmp, "wb") as out,
            ):
                while chunk := resp.read(CHUNK):
                    received += len(chunk)
                    if received > limit:
                        raise DeliveryError(
                            f"{url}: expected at most {limit} bytes. Received: more", refused=True
                        )
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except DeliveryError:
            tmp.unlink(missing_ok=True)
            raise
        except urllib.error.HTTPError as exc:
            tmp.unlink(missing_ok=True)
            raise DeliveryError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (OSError, ValueError, http.client.HTTPException) as exc:  # timeouts, resets, TLS,
            # a bad URL, a body shorter than its Content-Length (IncompleteRead)
            tmp.unlink(missing_ok=True)
            reason = getattr(exc, "reason", None) or exc
            raise DeliveryError(f"{url}: {reason} after {received} bytes") from None
        check(url, tmp, received, digest.hexdigest(), size=size, sha256=sha256)
        tmp.replace(dest)


def check(
    url: str, path: Path, received: int, got: str, *, size: int | None, sha256: str | None
) -> None:
    """Size first (a short transfer is retried), then the digest (other bytes are refused)."""
    if size is not None and received != size:
        path.unlink(missing_ok=True)
        raise DeliveryError(
            f"{url}: expected {size} bytes. Received: {received} (the transfer was cut short)"
        )
    if sha256 is not None and got != sha256:
        path.unlink(missing_ok=True)
        raise DeliveryError(
            f"{url}: expected sha256 {sha256}. Received: sha256={got} (the file differs from the "
            "one the desired state names)",
            refused=True,
        )
