"""When a health sample is worth sending now, and when the board counts as degraded.

A sample is *significant* when a bucketed figure moves to another bucket (CPU by 20 %,
temperature by 5 °C, memory by 10 %; see ``HealthSettings``) or a discrete one changes
(throttling now, model version, training or SuperNode state, failed sensors).
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass

from agent.health.schema import Health
from agent.health.settings import HealthSettings


@dataclass(frozen=True)
class Buckets:
    cpu_pct: float = 20.0
    temp_c: float = 5.0
    mem_pct: float = 10.0

    @classmethod
    def from_settings(cls, settings: HealthSettings) -> Buckets:
        return cls(settings.cpu_step_pct, settings.temp_step_c, settings.mem_step_pct)


def _bucket(value: float | None, step: float) -> int | None:
    return None if value is None else math.floor(value / step)


def signature(health: Health, buckets: Buckets) -> tuple[Hashable, ...]:
    """What must change for a sample to count as significant."""
    throttling = health.throttling
    return (
        _bucket(health.cpu_pct, buckets.cpu_pct),
        _bucket(health.cpu_temp_c, buckets.temp_c),
        _bucket(health.memory.pct, buckets.mem_pct),
        None if throttling is None else throttling.any_now,
        None if health.model is None else health.model.version,
        health.training.state,
        health.federation.supernode,
        health.sensors.failed,
    )


def degraded(health: Health, alert_temp_c: float) -> tuple[str, ...]:
    """Reasons the board is in ``alert`` (empty when it is fine)."""
    reasons: list[str] = []
    throttling = health.throttling
    if throttling is not None:
        if throttling.under_voltage:
            reasons.append("under_voltage")
        if throttling.throttled or throttling.freq_capped or throttling.soft_temp_limit:
            reasons.append("throttled")
    if health.cpu_temp_c is not None and health.cpu_temp_c >= alert_temp_c:
        reasons.append("hot")
    if health.sensors.failed:
        reasons.append("sensor_failed")
    if health.federation.supernode == "failed":
        reasons.append("supernode_failed")
    return tuple(reasons)
