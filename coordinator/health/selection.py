"""Health-aware device selection: which Flower nodes may train this round, and why not.

The ServerApp asks Flower's Grid for node ids, then::

    selection = policy.select(registry, node_ids)
    grid_nodes = selection.eligible             # send train messages to these only
    history_round["skipped"] = selection.skipped_json()

A node is skipped when its device is lost, disconnected or stale, hotter than ``max_temp_c``,
throttled right now (firmware flags), short of free memory, or has failed ``max_failures_in_row``
training rounds in a row. A node id the registry has never seen (no health reported yet) stays
eligible; ``notes`` says so. Each rule can be switched off (``false`` in ``[selection]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from coordinator.errors import InvalidConfig
from coordinator.health.records import DeviceRecord
from coordinator.options import Section

if TYPE_CHECKING:
    from coordinator.health.registry import Registry


@dataclass(frozen=True)
class Selection:
    eligible: tuple[int, ...]
    skipped: dict[int, str] = field(default_factory=dict)  # node id -> why
    notes: dict[int, str] = field(default_factory=dict)  # eligible, but worth saying

    def skipped_json(self) -> dict[str, str]:
        """``skipped`` with string keys, as written to ``history.json``."""
        return {str(node): reason for node, reason in sorted(self.skipped.items())}


@dataclass(frozen=True)
class SelectionPolicy:
    max_temp_c: float | None = 80.0
    skip_throttled: bool = True
    min_free_memory_mb: float | None = 128.0
    max_failures_in_row: int | None = 3
    exclude_lost: bool = True  # lost or disconnected
    exclude_stale: bool = True

    @classmethod
    def from_section(cls, sec: Section) -> SelectionPolicy:
        d = cls()
        policy = cls(
            max_temp_c=sec.optional_float("max_temp_c", d.max_temp_c, low=0.0, high=150.0),
            skip_throttled=sec.get_bool("skip_throttled", d.skip_throttled),
            min_free_memory_mb=sec.optional_float(
                "min_free_memory_mb", d.min_free_memory_mb, low=0.0
            ),
            max_failures_in_row=sec.optional_int(
                "max_failures_in_row", d.max_failures_in_row, low=1
            ),
            exclude_lost=sec.get_bool("exclude_lost", d.exclude_lost),
            exclude_stale=sec.get_bool("exclude_stale", d.exclude_stale),
        )
        sec.done()
        return policy

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], source: str = "selection") -> SelectionPolicy:
        """From a ``[selection]`` table alone (e.g. passed to the ServerApp in its run config)."""
        errors: list[str] = []
        policy = cls.from_section(Section("selection", table, errors))
        if errors:
            raise InvalidConfig(source, errors)
        return policy

    def reason(self, rec: DeviceRecord) -> str | None:
        """Why this device should not train now, or None when it may."""
        who = rec.device_id
        if self.exclude_lost and rec.state in ("lost", "disconnected"):
            return f"{who}: {rec.state}"
        if self.exclude_stale and rec.state == "stale":
            return f"{who}: stale (silent {rec.silent_s:.0f} s, health every {rec.interval_s:g} s)"
        temp = rec.cpu_temp_c
        if self.max_temp_c is not None and temp is not None and temp > self.max_temp_c:
            return f"{who}: too hot (cpu {temp:.1f} °C > max_temp_c {self.max_temp_c:g})"
        if self.skip_throttled and rec.throttled_now:
            return f"{who}: throttled now ({', '.join(rec.throttled_now)})"
        free = rec.free_memory_mb
        if (
            self.min_free_memory_mb is not None
            and free is not None
            and free < self.min_free_memory_mb
        ):
            return (
                f"{who}: short of memory ({free:.0f} MB free < "
                f"min_free_memory_mb {self.min_free_memory_mb:g})"
            )
        limit = self.max_failures_in_row
        if limit is not None and rec.failures >= limit:
            return f"{who}: {rec.failures} training failures in a row (max_failures_in_row {limit})"
        return None

    def select(self, registry: Registry, node_ids: Iterable[int]) -> Selection:
        eligible: list[int] = []
        skipped: dict[int, str] = {}
        notes: dict[int, str] = {}
        for node_id in node_ids:
            rec = registry.device_for_node(node_id)
            if rec is None:
                notes[node_id] = "no device has reported this node id over MQTT yet"
                eligible.append(node_id)
                continue
            why = self.reason(rec)
            if why is None:
                eligible.append(node_id)
            else:
                skipped[node_id] = why
        return Selection(tuple(eligible), skipped, notes)


def select(
    registry: Registry, node_ids: Iterable[int], policy: SelectionPolicy | None = None
) -> Selection:
    """``(policy or SelectionPolicy()).select(registry, node_ids)``."""
    return (policy or SelectionPolicy()).select(registry, node_ids)
