"""``GET /api/models``: versions per device, the rollout and its groups, metrics per version.

Built from the rollout store and the device registry through
:func:`coordinator.rollout.view.build_status` (what ``orchard-coordinator rollout status``
shows too)::

    {"rollout": null | {"id", "run_id", "round", "version", "previous",
                        "stage": "canary"|"rolling_back"|"rolled_back"|"promoted"|"aborted",
                        "started", "soak_s", "soak_ends", "min_labels", "canary": [ids],
                        "control": [ids],
                        "decision": null | {"outcome": "promote"|"rollback"|"abort", "reason",
                                            "at", "by": "auto"|"operator"},
                        "comparison": {"canary": GROUP, "control": GROUP}},
     "devices": [{"device_id", "online", "serving", "desired", "delivery", "delivery_error",
                  "group": "canary"|"control"|null}],
     "versions": [{"version", "devices", "predictions", "errors", "p50_ms", "p99_ms",
                   "mean_confidence", "drift_psi", "labelled", "accuracy", "mae"}],
     "history": [{"id", "version", "previous", "stage", "decision", "started", "finished"}]}

    GROUP = {"devices", "reporting", "predictions", "errors", "error_rate", "p99_ms",
             "mean_confidence", "labelled", "accuracy", "mae"}

``rollout`` is the active rollout, else the latest (a delivery to every device is one too, with
no canary); ``history`` the newest first. Without a rollout store (no rollout configured)
``rollout`` is null, ``history`` empty and ``desired`` null.
"""

from __future__ import annotations

from typing import Any

from coordinator.health.registry import Registry
from coordinator.rollout.store import RolloutStore
from coordinator.rollout.view import build_status

HISTORY: int = 20


def models_document(
    registry: Registry, store: RolloutStore | None, *, history: int = HISTORY
) -> dict[str, Any]:
    status = build_status(store, registry)
    past = store.rollouts(history) if store is not None else []
    return {
        "rollout": status.rollout.to_dict() if status.rollout else None,
        "devices": [d.to_dict() for d in status.devices],
        "versions": [v.to_dict() for v in status.versions],
        "history": [
            {
                "id": r.id,
                "version": r.version,
                "previous": r.previous,
                "stage": r.stage,
                "decision": r.decision.to_dict() if r.decision else None,
                "started": r.started,
                "finished": r.finished,
            }
            for r in past
        ],
    }
