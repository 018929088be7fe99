"""Errors of what every Orchard process shares: one root, drawn once.

CommonError
├── SigningError     a signer's certificate or key cannot sign (names the file and why)
└── SignatureError   a signature does not verify; ``reason`` says which check refused it

Third-party exceptions (``cryptography``'s ``InvalidSignature``, ``ValueError`` from a bad PEM,
``binascii.Error``) are translated into these in signing.py, the module that calls the library.
"""

from __future__ import annotations

from typing import Any, Final


class CommonError(Exception):
    """Root of every error orchard_common raises on purpose."""


class SigningError(CommonError, ValueError):
    """A signer cannot be loaded (Keras style: the field, what was expected, what was received)."""

    def __init__(self, field: str, value: Any, expected: str) -> None:
        self.field = field
        self.value = value
        self.expected = expected
        super().__init__(f"{field}: expected {expected}. Received: {field}={value!r}")


# SignatureError.reason, one word per check (what an agent's event can carry).
REASONS: Final = (
    "unsigned",  # no signature where one is required
    "malformed",  # the signature is not base64, or a certificate is not PEM
    "fingerprint",  # the signer certificate is not the one the signature names
    "issuer",  # the signer certificate was not issued by the trusted CA
    "expired",  # the signer (or CA) certificate is past its not-after date
    "not_yet_valid",  # ... or before its not-before date
    "usage",  # the signer certificate may not sign code (no codeSigning extended key usage)
    "key",  # the signer's key is not an EC P-256 key
    "signature",  # the signature does not match the signed bytes
)


class SignatureError(CommonError):
    """A signature was refused; ``reason`` is one of :data:`REASONS`, the message says more."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"expected a reason among {REASONS}. Received: reason={reason!r}")
        self.reason = reason
        super().__init__(message)
