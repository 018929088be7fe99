"""Live metrics per model version (health's ``models`` section) from the prediction log.

The serving version comes first (with zeros before its first prediction), then the most
recently active other version that has predictions logged ("previous"). Counted over what the
log holds (``[labels] max_predictions``, ``max_age_s``). ``drift_psi`` is the population
stability index of the serving version's class distribution against the previous one's::

    PSI = sum over classes c of (p_c - q_c) * ln(p_c / q_c)

with ``p``, ``q`` the two versions' class shares and every share floored at :data:`EPSILON`
so an empty bin counts as rare instead of infinite. Rules of thumb: below 0.1 no real change,
0.1-0.25 a moderate shift, above 0.25 a large one. ``None`` without a previous version or
without classes on both sides; the previous version's own entry carries none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from agent.health.codec import MAX_ITEMS
from agent.health.schema import LiveModel
from agent.labels.logdb import Summary

EPSILON = 1e-4
MAX_KEY = 64
OTHER = "_other"


def psi(current: Mapping[str, int], previous: Mapping[str, int]) -> float | None:
    """The population stability index of ``current`` against ``previous`` class counts."""
    n, m = sum(current.values()), sum(previous.values())
    if n <= 0 or m <= 0:
        return None
    total = 0.0
    for c in set(current) | set(previous):
        p = max(current.get(c, 0) / n, EPSILON)
        q = max(previous.get(c, 0) / m, EPSILON)
        total += (p - q) * math.log(p / q)
    return max(0.0, total)


def live_model(summary: Summary, previous: Summary | None = None) -> LiveModel:
    """One version's :class:`LiveModel`; ``previous`` gives the drift (serving version only)."""
    drift = None if previous is None else psi(summary.classes, previous.classes)
    return LiveModel(
        version=summary.version,
        predictions=summary.predictions,
        errors=summary.errors,
        p50_ms=_round(summary.p50_ms, 4),
        p99_ms=_round(summary.p99_ms, 4),
        mean_confidence=_round(_unit(summary.mean_confidence), 4),
        classes=_bounded(summary.classes),
        drift_psi=_round(drift, 6),
        labelled=summary.labelled,
        accuracy=_round(_unit(summary.accuracy), 4),
        mae=_round(summary.mae, 6),
        since=summary.since,
    )


def _bounded(classes: Mapping[str, int]) -> dict[str, int]:
    """At most the schema's 64 keys of at most 64 characters: the most frequent classes, the
    rest summed under ``_other``."""
    ranked = sorted(classes.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(ranked) <= MAX_ITEMS:
        return {k[:MAX_KEY]: v for k, v in ranked}
    kept = {k[:MAX_KEY]: v for k, v in ranked[: MAX_ITEMS - 1]}
    kept[OTHER] = kept.get(OTHER, 0) + sum(v for _k, v in ranked[MAX_ITEMS - 1 :])
    return kept


def _unit(value: float | None) -> float | None:
    return None if value is None else min(1.0, max(0.0, value))


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
