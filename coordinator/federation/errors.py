"""Errors of the coordinator's federation side (all under ``CoordinatorError``).

CoordinatorError
└── FederationError
    ├── InvalidRunConfig   [run] / run-config values are wrong (lists every one)
    ├── SuperLinkError     the SuperLink did not start, or died
    └── RunFailed          a run ended failed/stopped, or never got enough devices
"""

from __future__ import annotations

from coordinator.errors import CoordinatorError


class FederationError(CoordinatorError):
    pass


class InvalidRunConfig(FederationError, ValueError):
    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))


class SuperLinkError(FederationError):
    pass


class RunFailed(FederationError):
    pass
