"""The ``[training]`` section of ``agent.toml``: what a training round may use on this board.

Enforced by the budget gate (gate.py) before a round and by the trainer's supervisor
(trainer_supervisor.py) during one; provisioning renders the trainer unit's limits from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.options import Options


@dataclass(frozen=True)
class TrainingSettings:
    """What a training round may use on this board (enforced by the trainer's supervisor)."""

    memory_mb: int = 768
    cpu_quota_pct: int = 50
    max_seconds: float = 600.0
    max_temp_c: float = 75.0
    skip_when_throttled: bool = True
    allowed_hours: tuple[int, int] = (0, 24)
    nice: int = 10
    # SCHED_IDLE: the trainer runs only on CPU time nothing else wants. false: nice alone, for
    # boards whose other work never leaves a core idle (idle scheduling would starve a round).
    idle_scheduling: bool = True
    idle_timeout_s: float = 300.0
    reserve_agent_cpu: bool = False  # CPU 0 for the agent alone (agent/cpus.py)

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> TrainingSettings:
        o = Options("training", table, collect=True)
        hours = o.get_raw("allowed_hours", [0, 24])
        if not (
            isinstance(hours, list | tuple)
            and len(hours) == 2
            and all(isinstance(h, int) and not isinstance(h, bool) for h in hours)
            and 0 <= hours[0] < hours[1] <= 24
        ):
            o.report("allowed_hours", hours, "[start, end] hours with 0 <= start < end <= 24")
            hours = [0, 24]
        budget = cls(
            memory_mb=o.get_int("memory_mb", 768, low=64),
            cpu_quota_pct=o.get_int("cpu_quota_pct", 50, low=1, high=400),
            max_seconds=o.get_float("max_seconds", 600.0, positive=True),
            max_temp_c=o.get_float("max_temp_c", 75.0, low=30.0, high=110.0),
            skip_when_throttled=o.get_bool("skip_when_throttled", True),
            allowed_hours=(int(hours[0]), int(hours[1])),
            nice=o.get_int("nice", 10, low=0, high=19),
            idle_scheduling=o.get_bool("idle_scheduling", True),
            idle_timeout_s=o.get_float("idle_timeout_s", 300.0, positive=True),
            reserve_agent_cpu=o.get_bool("reserve_agent_cpu", False),
        )
        o.done()
        return budget
