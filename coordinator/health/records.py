"""What the registry knows about one device, and the state shown for it.

``state`` is the device's own status, except that a device that has not been heard from for
``stale_after_intervals`` of its health interval is ``stale``, and a device with no status yet is
``unknown``. ``lost`` (its Last Will) and ``disconnected`` (a clean stop) win over staleness.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final

from agent.health.schema import Birth, Health, SchemaError

STATES: Final = ("init", "ready", "alert", "stale", "disconnected", "lost", "unknown")


def _get(doc: dict[str, Any] | None, *path: str) -> Any:
    """``doc[path[0]][path[1]]...`` or None; the JSON was validated when it was ingested."""
    value: Any = doc
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


@dataclass(frozen=True)
class DeviceRecord:
    """One device. ``health_doc``/``birth_doc`` are the stored (validated) JSON objects;
    ``health``/``birth`` decode them into the schema's types on first use."""

    device_id: str
    fleet: str | None
    status: str | None  # as the device last said (init/ready/alert/disconnected/lost)
    session: int | None
    reasons: tuple[str, ...]
    birth_doc: dict[str, Any] | None
    health_doc: dict[str, Any] | None
    first_seen: float
    last_seen: float
    last_health_at: float | None
    interval_s: float
    node_id: int | None
    last_round: int | None
    last_outcome: str | None
    failures_in_row: int  # counted by the coordinator from round outcomes
    state: str  # effective state, see the module docstring
    silent_s: float  # seconds since the device was last heard from

    @cached_property
    def health(self) -> Health | None:
        return _decode(Health, self.health_doc)

    @cached_property
    def birth(self) -> Birth | None:
        return _decode(Birth, self.birth_doc)

    @property
    def stale(self) -> bool:
        return self.state == "stale"

    @property
    def failures(self) -> int:
        """Training failures in a row: the larger of the coordinator's and the device's count."""
        reported = _get(self.health_doc, "training", "failures_in_row") or 0
        return max(self.failures_in_row, int(reported))

    @property
    def free_memory_mb(self) -> float | None:
        return _get(self.health_doc, "memory", "available_mb")

    @property
    def cpu_temp_c(self) -> float | None:
        return _get(self.health_doc, "cpu_temp_c")

    @property
    def throttled_now(self) -> tuple[str, ...]:
        """Names of the firmware throttle flags set right now (empty off a Pi)."""
        flags = ("under_voltage", "freq_capped", "throttled", "soft_temp_limit")
        return tuple(name for name in flags if _get(self.health_doc, "throttling", name) is True)

    @property
    def model_version(self) -> str | None:
        return _get(self.health_doc, "model", "version")

    def summary(self) -> dict[str, Any]:
        """A flat JSON-ready row for the fleet table, dashboard and ``fleet --json``."""
        h = self.health_doc
        return {
            "device_id": self.device_id,
            "fleet": self.fleet,
            "state": self.state,
            "status": self.status,
            "reasons": list(self.reasons),
            "session": self.session,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "silent_s": round(self.silent_s, 1),
            "interval_s": self.interval_s,
            "node_id": self.node_id,
            "board": _get(self.birth_doc, "board"),
            "cpu_pct": _get(h, "cpu_pct"),
            "cpu_temp_c": self.cpu_temp_c,
            "throttled": list(self.throttled_now),
            "memory_pct": _get(h, "memory", "pct"),
            "memory_available_mb": self.free_memory_mb,
            "rss_mb": _get(h, "rss_mb"),
            "model_version": self.model_version,
            "training_state": _get(h, "training", "state"),
            "last_round": self._last_round(),
            "last_outcome": self.last_outcome or _get(h, "training", "last_outcome"),
            "failures_in_row": self.failures,
            "inference_p95_ms": _get(h, "inference", "p95_ms"),
            "outbox_dropped": _get(h, "outbox", "dropped"),
        }

    def _last_round(self) -> int | None:
        reported = _get(self.health_doc, "training", "round")
        rounds = [r for r in (self.last_round, reported) if isinstance(r, int)]
        return max(rounds) if rounds else None


def _decode(cls: type[Any], doc: dict[str, Any] | None) -> Any:
    if doc is None:
        return None
    try:
        return cls.validate(doc)
    except SchemaError:  # written by an older schema: show the device without it
        return None


def effective_state(
    status: str | None, silent_s: float, interval_s: float, stale_after_intervals: float
) -> str:
    if status in ("lost", "disconnected"):
        return status
    if silent_s > stale_after_intervals * interval_s:
        return "stale"
    return status or "unknown"
