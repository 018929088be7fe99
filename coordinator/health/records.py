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
        reported = self.health.training.failures_in_row if self.health else 0
        return max(self.failures_in_row, reported)

    @property
    def free_memory_mb(self) -> float | None:
        return self.health.memory.available_mb if self.health else None

    @property
    def cpu_temp_c(self) -> float | None:
        return self.health.cpu_temp_c if self.health else None

    @property
    def throttled_now(self) -> tuple[str, ...]:
        """Names of the firmware throttle flags set right now (empty off a Pi)."""
        t = self.health.throttling if self.health else None
        if t is None:
            return ()
        flags = {
            "under_voltage": t.under_voltage,
            "freq_capped": t.freq_capped,
            "throttled": t.throttled,
            "soft_temp_limit": t.soft_temp_limit,
        }
        return tuple(name for name, on in flags.items() if on)

    @property
    def model_version(self) -> str | None:
        return self.health.model.version if self.health and self.health.model else None

    @property
    def agent_version(self) -> str | None:
        """The Orchard version the board runs (its birth message: sent at every agent start)."""
        birth = self.birth
        return birth.agent_version or None if birth is not None else None

    def summary(self) -> dict[str, Any]:
        """A flat JSON-ready row for the fleet table, dashboard and ``fleet --json``."""
        h = self.health
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
            "board": self.birth.board if self.birth else None,
            "cpu_pct": h.cpu_pct if h else None,
            "cpu_temp_c": self.cpu_temp_c,
            "throttled": list(self.throttled_now),
            "memory_pct": h.memory.pct if h else None,
            "memory_available_mb": self.free_memory_mb,
            "rss_mb": h.rss_mb if h else None,
            "model_version": self.model_version,
            "agent_version": self.agent_version,
            "training_state": h.training.state if h else None,
            "last_round": self._last_round(),
            "last_outcome": self.last_outcome or (h.training.last_outcome if h else None),
            "failures_in_row": self.failures,
            "inference_p95_ms": h.inference.p95_ms if h else None,
            "outbox_dropped": h.outbox.dropped if h else None,
        }

    def _last_round(self) -> int | None:
        reported = self.health.training.round if self.health else None
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
