"""Health-aware selection inside the ServerApp process, over the coordinator's registry.

The ServerApp runs as ``flwr-serverapp`` under the SuperLink; it opens the same SQLite registry
the health ingest writes (WAL: one writer, many readers), asks the selection policy which
nodes may train, and records each node's outcome so ``max-failures-in-row`` can act.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from coordinator.federation.runconfig import RunSettings

logger = logging.getLogger(__name__)


class Fleet(Protocol):
    def select(self, nodes: list[int]) -> tuple[list[int], dict[int, str]]: ...

    def record(self, rnd: int, outcomes: dict[int, tuple[bool, str]]) -> None: ...


class AllNodes:
    """No registry: every connected node is offered every round."""

    def select(self, nodes: list[int]) -> tuple[list[int], dict[int, str]]:
        return nodes, {}

    def record(self, rnd: int, outcomes: dict[int, tuple[bool, str]]) -> None:
        return None


class RegistryFleet:
    def __init__(self, settings: RunSettings) -> None:
        from coordinator.health.registry import Registry
        from coordinator.health.selection import SelectionPolicy

        self.registry = Registry(Path(settings.registry))
        self.policy = SelectionPolicy(
            max_temp_c=settings.max_temp_c,
            skip_throttled=settings.skip_throttled,
            min_free_memory_mb=float(settings.min_free_memory_mb) or None,
            max_failures_in_row=settings.max_failures_in_row or None,
        )

    def select(self, nodes: list[int]) -> tuple[list[int], dict[int, str]]:
        chosen = self.policy.select(self.registry, nodes)
        for node, note in chosen.notes.items():
            logger.info("node %d: %s", node, note)
        return list(chosen.eligible), dict(chosen.skipped)

    def record(self, rnd: int, outcomes: dict[int, tuple[bool, str]]) -> None:
        for node, (ok, outcome) in outcomes.items():
            self.registry.record_node_outcome(node, rnd, ok, outcome)


def fleet_for(settings: RunSettings) -> Fleet:
    return RegistryFleet(settings) if settings.registry else AllNodes()
