"""Errors of the coordinator's canary rollout (all under ``CoordinatorError``).

CoordinatorError
└── RolloutError        the rollout store failed (SQLite: disk full, locked, corrupt)
    └── RolloutRefused  start, deliver, promote or abort cannot be done now; the message says
                        why and what to do instead (a rollout is active, no previous model, no
                        artifact for that run and round, an unknown device)
        └── NoPreviousModel  no device serves a model a canary could be rolled back to:
                             deliver a first model to every device instead
"""

from __future__ import annotations

from coordinator.errors import CoordinatorError


class RolloutError(CoordinatorError):
    pass


class RolloutRefused(RolloutError):
    pass


class NoPreviousModel(RolloutRefused):
    """No device serves a model the coordinator could roll a canary back to."""
