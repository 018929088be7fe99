"""Errors of software releases (under ``CoordinatorError``).

CoordinatorError
└── ReleaseError     a wheelhouse that cannot be published (names the file and why)
"""

from __future__ import annotations

from coordinator.errors import CoordinatorError


class ReleaseError(CoordinatorError):
    pass
