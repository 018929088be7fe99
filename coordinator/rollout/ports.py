"""What the rollout needs from the rest of the coordinator, as protocols.

The controller never builds an artifact or touches MQTT itself; the running coordinator hands
it these (coordinator/delivery/ implements both)::

    artifacts.artifact("run-7", 3)   # the round's model as served: Artifact, or a
                                     # CoordinatorError subclass naming what is missing
    artifacts.find("run-7.3")        # a version served earlier, or None
    publisher.publish("pi-1", "barn", desired)   # retained on Topics(...).desired
"""

from __future__ import annotations

from typing import Protocol

from agent.delivery.desired import Artifact, Desired


class ArtifactSource(Protocol):
    def artifact(self, run_id: str, round_: int) -> Artifact:
        """The model of ``run_id``'s round ``round_``; a ``CoordinatorError`` when missing."""
        ...

    def find(self, version: str) -> Artifact | None:
        """A version by name (e.g. the one a rollback returns to), or None when not served."""
        ...


class Publisher(Protocol):
    def publish(self, device_id: str, fleet: str | None, desired: Desired) -> None:
        """Publish ``desired`` retained for one device; a ``CoordinatorError`` on failure."""
        ...
