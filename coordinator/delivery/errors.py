"""Errors of the coordinator's model delivery (all under ``CoordinatorError``).

CoordinatorError
└── DeliveryError       the signer cannot be loaded, or another delivery failure
    ├── ArtifactError   a round's bundle is missing or inconsistent (names run, round, file)
    └── NotServed       a version or file name the catalog does not serve (the server's 404)
"""

from __future__ import annotations

from coordinator.errors import CoordinatorError


class DeliveryError(CoordinatorError):
    pass


class ArtifactError(DeliveryError):
    """``runs/<run_id>/round-<n>/<file>`` cannot be delivered; the message says why."""

    def __init__(self, run_id: str, round_: int, file: str, problem: str) -> None:
        self.run_id = run_id
        self.round = round_
        self.file = file
        super().__init__(f"run {run_id} round {round_}: {file}: {problem}")


class NotServed(DeliveryError):
    """Not in the catalog: an unknown version, or a file name other than the three served."""
