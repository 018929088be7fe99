"""What the rollout looks like now: typed views built from the store and the registry.

The controller's ``status()``, ``orchard-coordinator rollout status`` and the dashboard's
``GET /api/models`` all read through :func:`build_status`, so they say the same thing. The
groups' figures come from each device's latest ``Health.models`` entry (canary devices for the
new version, control devices for the previous one), through the same
:func:`coordinator.rollout.policy.evaluate` the controller decides with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from agent.health.schema import LiveModel
from coordinator.health.records import DeviceRecord
from coordinator.health.registry import Registry
from coordinator.rollout.policy import (
    Comparison,
    GroupStats,
    Sample,
    Verdict,
    aggregate,
    compare,
    evaluate,
)
from coordinator.rollout.store import DesiredState, Request, Rollout, RolloutStore

OFFLINE: Final[tuple[str, ...]] = ("stale", "lost", "disconnected")
Group = Literal["canary", "control"]


def online(rec: DeviceRecord | None) -> bool:
    """Heard from recently and not gone: ``init``, ``ready``, ``alert`` or ``unknown``."""
    return rec is not None and rec.state not in OFFLINE


def sample(device_id: str, rec: DeviceRecord | None, version: str | None) -> Sample:
    """One device's evidence for ``version``: its last report counts even when offline now.

    Only while that report says the device serves ``version``: the figures a board keeps for
    a version it served before (its "previous" entry, e.g. after an earlier rollback) are old
    evidence, not this rollout's (the agent restarts a version's figures each time it starts
    serving it).
    """
    health = rec.health if rec is not None else None
    if health is None or version is None:
        return Sample(device_id, online(rec), serving=False)
    serving = health.model is not None and health.model.version == version
    live = next((m for m in health.models if m.version == version), None) if serving else None
    before = next((m for m in health.models if m.version != version), None) if serving else None
    return Sample(device_id, online(rec), serving, live, before)


def samples(
    rollout: Rollout, records: Mapping[str, DeviceRecord]
) -> tuple[list[Sample], list[Sample]]:
    """(canary samples for the new version, control samples for the previous one)."""
    canary = [sample(d, records.get(d), rollout.version) for d in rollout.canary]
    control = [sample(d, records.get(d), rollout.previous) for d in rollout.control]
    return canary, control


@dataclass(frozen=True)
class DeviceView:
    device_id: str
    fleet: str | None
    state: str  # the registry's effective state
    online: bool
    serving: str | None  # the version its last health reported
    desired: str | None  # the version it is asked to serve
    seq: int | None
    delivery: str | None  # Health.delivery.state
    delivery_error: str | None
    group: Group | None

    def to_dict(self) -> dict[str, Any]:
        """A ``devices`` row of ``GET /api/models``."""
        return {
            "device_id": self.device_id,
            "online": self.online,
            "serving": self.serving,
            "desired": self.desired,
            "delivery": self.delivery,
            "delivery_error": self.delivery_error,
            "group": self.group,
        }


@dataclass(frozen=True)
class RolloutView:
    rollout: Rollout
    comparison: Comparison
    verdict: Verdict | None  # what the policy says now (a rollout in its canary stage only)

    def to_dict(self) -> dict[str, Any]:
        """The ``rollout`` object of ``GET /api/models``."""
        r = self.rollout
        return {
            "id": r.id,
            "run_id": r.run_id,
            "round": r.round,
            "version": r.version,
            "previous": r.previous,
            "stage": r.stage,
            "started": r.started,
            "soak_s": r.soak_s,
            "soak_ends": r.soak_ends,
            "min_labels": r.min_labels,
            "canary": list(r.canary),
            "control": list(r.control),
            "decision": r.decision.to_dict() if r.decision else None,
            "comparison": self.comparison.to_dict(),
        }


@dataclass(frozen=True)
class VersionView:
    """One version's live metrics over every device that reported them (last report each)."""

    version: str
    stats: GroupStats
    since: float | None  # the earliest device it started serving on

    def to_dict(self) -> dict[str, Any]:
        """A ``versions`` row of ``GET /api/models``."""
        g = self.stats.to_dict()
        return {
            "version": self.version,
            "devices": self.stats.devices,
            "predictions": self.stats.predictions,
            "errors": self.stats.errors,
            "p50_ms": _round(self.stats.p50_ms),
            "p99_ms": g["p99_ms"],
            "mean_confidence": g["mean_confidence"],
            "drift_psi": _round(self.stats.drift_psi),
            "labelled": self.stats.labelled,
            "accuracy": g["accuracy"],
            "mae": g["mae"],
        }


@dataclass(frozen=True)
class RolloutStatus:
    now: float
    current: str | None  # the fleet's version (what a device outside a canary gets)
    rollout: RolloutView | None  # the active rollout, else the latest one
    devices: tuple[DeviceView, ...]
    versions: tuple[VersionView, ...]  # newest first
    pending: tuple[Request, ...]  # operator requests the controller has not consumed yet


def version_views(records: Mapping[str, DeviceRecord]) -> tuple[VersionView, ...]:
    """Every version some device reported live metrics for, the newest first."""
    per_version: dict[str, list[LiveModel]] = {}
    for rec in records.values():
        health = rec.health
        for live in health.models if health is not None else ():
            per_version.setdefault(live.version, []).append(live)
    views = [
        VersionView(
            version,
            aggregate(lives, devices=len(lives), reporting=len(lives)),
            min((m.since for m in lives if m.since is not None), default=None),
        )
        for version, lives in per_version.items()
    ]
    views.sort(key=lambda v: (-(v.since or 0.0), v.version))
    return tuple(views)


def device_views(
    records: Mapping[str, DeviceRecord],
    desired: Mapping[str, DesiredState],
    rollout: Rollout | None,
) -> tuple[DeviceView, ...]:
    """Every device the registry or the store knows, sorted by id."""
    views = []
    for device_id in sorted(set(records) | set(desired)):
        rec, want = records.get(device_id), desired.get(device_id)
        health = rec.health if rec is not None else None
        delivery = health.delivery if health is not None else None
        views.append(
            DeviceView(
                device_id=device_id,
                fleet=rec.fleet if rec is not None else want.fleet if want else None,
                state=rec.state if rec is not None else "unknown",
                online=online(rec),
                serving=rec.model_version if rec is not None else None,
                desired=want.version if want else None,
                seq=want.seq if want else None,
                delivery=delivery.state if delivery else None,
                delivery_error=delivery.last_error if delivery else None,
                group=rollout.group(device_id) if rollout is not None else None,
            )
        )
    return tuple(views)


def rollout_view(rollout: Rollout, records: Mapping[str, DeviceRecord], now: float) -> RolloutView:
    canary, control = samples(rollout, records)
    verdict = None
    if rollout.stage == "canary":
        verdict = evaluate(canary, control, rollout.criteria, now - rollout.started)
    return RolloutView(rollout, compare(canary, control), verdict)


def build_status(store: RolloutStore | None, registry: Registry) -> RolloutStatus:
    records = {rec.device_id: rec for rec in registry.devices()}
    now = registry.clock()
    versions = version_views(records)
    if store is None:
        return RolloutStatus(now, None, None, device_views(records, {}, None), versions, ())
    latest = store.rollouts(1)
    rollout = store.active() or (latest[0] if latest else None)
    current = store.current()
    desired = {d.device_id: d for d in store.desired_states()}
    return RolloutStatus(
        now=now,
        current=current.version if current else None,
        rollout=rollout_view(rollout, records, now) if rollout else None,
        devices=device_views(records, desired, rollout),
        versions=versions,
        pending=tuple(store.pending()),
    )


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)
