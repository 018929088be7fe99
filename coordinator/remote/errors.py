"""Errors of the coordinator's remote configuration (all under ``CoordinatorError``).

CoordinatorError
└── RemoteError         the command store failed (SQLite), or a command could not be sent
    ├── PatchError      a KEY=VALUE is malformed or names a key that never changes remotely;
    │                   ``errors`` names each one (nothing was sent)
    └── SendError       the broker refused or did not confirm a command (names host:port, why)
"""

from __future__ import annotations

from coordinator.errors import CoordinatorError


class RemoteError(CoordinatorError):
    pass


class PatchError(RemoteError, ValueError):
    """One or more wrong ``KEY=VALUE`` arguments; ``errors`` lists each, Keras style."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        lines = "\n".join(f"  - {e}" for e in errors)
        super().__init__(f"{len(errors)} wrong key(s) or value(s), nothing was sent:\n{lines}")


class SendError(RemoteError):
    """The broker could not be reached, refused the connection, or did not confirm a publish."""
