"""Errors of ``orchard-provision``: one root, drawn once.

ProvisionError
├── InvalidOption    a user-given value is wrong (names the field, value and expectation)
├── CaError          the fleet CA or its inventory is missing, damaged or refuses a request
├── ImageError       the image is not a Raspberry Pi OS image we can edit, or mtools failed
├── TargetError      applying the plan to a root directory, a board or a disk failed
└── WheelhouseError  a wheelhouse cannot be built, or would not install offline on the board
"""

from __future__ import annotations

from typing import Any


class ProvisionError(Exception):
    """Root of every error ``orchard-provision`` raises on purpose."""


class InvalidOption(ProvisionError):
    def __init__(self, field: str, value: Any, expected: str) -> None:
        self.field = field
        self.value = value
        self.expected = expected
        super().__init__(f"{field}: expected {expected}. Received: {field}={value!r}")


class CaError(ProvisionError):
    pass


class ImageError(ProvisionError):
    pass


class TargetError(ProvisionError):
    pass


class WheelhouseError(ProvisionError):
    """Names the package, what was found and what the target board needs."""
