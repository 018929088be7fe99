"""Judging a canary against its control group: pure functions, no I/O, no clock.

The canary group is the devices asked to serve the new version, the control group the devices
still serving the previous one. Each device contributes its latest ``Health.models`` entry for
its group's version (a :class:`Sample`); :func:`aggregate` sums counts and takes
prediction-weighted means (accuracy and MAE weighted by labelled counts), and
:func:`evaluate` turns the two groups into a :class:`Verdict`::

    verdict = evaluate(canary_samples, control_samples, criteria, elapsed_s=420.0)
    verdict.action   # "wait", "promote" or "rollback"
    verdict.reason   # "canary accuracy 0.31 on 45 labels vs control 0.91 on 52: drop 0.597 >
                     #  0.05 + 0.240 (noise margin)"

Rules (docs/rollout.md, "How a decision is made"):

- **rollback early**, at any time, when a threshold is crossed on the evidence so far:
  accuracy (the drop must exceed ``max_accuracy_drop`` by ``confidence_z`` standard errors of
  the difference: the check runs every tick, and 30 labels measure an accuracy only to about
  +-0.05, so a bare comparison throws good models away; a benchmark saw 43 of 100 good
  canaries rolled back without the margin) or MAE once both groups have ``min_labels``
  labelled predictions (labels are
  judged only when ``min_labels > 0``); error rate, p99 latency and drift once the canary has
  ``min_predictions`` predictions. A canary device's last report counts even when it has
  gone offline since: bad evidence stays bad.
- **promote** only when the soak has elapsed, every canary device is online and serving the
  new version with its metrics reported, the canary has ``min_predictions`` predictions and
  (when ``min_labels > 0``) ``min_labels`` labelled ones, and no threshold is crossed.
- a canary device offline or not (yet) reporting the new version is **missing data**, never a
  pass: still missing at the deadline (``deadline_s``), the canary is rolled back with a
  reason that starts "insufficient data".
- otherwise **wait**, with a reason that says what is awaited.

p50/p99 latency per group is the prediction-weighted mean of the devices' own percentiles
(an approximation: the boards report percentiles, not their samples).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agent.health.schema import LiveModel
from coordinator.rollout.settings import Thresholds

Action = Literal["wait", "promote", "rollback"]


@dataclass(frozen=True)
class Sample:
    """One device of a group: whether it is online, whether it serves the group's version, and
    its latest live metrics for that version (``None``: it has reported none)."""

    device_id: str
    online: bool
    serving: bool
    live: LiveModel | None = None
    before: LiveModel | None = None  # the device's figures for the version it served before

    @property
    def reporting(self) -> bool:
        return self.online and self.serving and self.live is not None


@dataclass(frozen=True)
class GroupStats:
    devices: int = 0
    reporting: int = 0
    predictions: int = 0
    errors: int = 0
    error_rate: float | None = None  # errors / (predictions + errors)
    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_confidence: float | None = None
    drift_psi: float | None = None
    drift_noise: float | None = None  # what sampling alone makes PSI reach (see drift_noise)
    labelled: int = 0
    accuracy: float | None = None  # over labelled predictions
    mae: float | None = None  # over labelled predictions

    def to_dict(self) -> dict[str, Any]:
        """The dashboard's GROUP object (docs/rollout.md, GET /api/models)."""
        return {
            "devices": self.devices,
            "reporting": self.reporting,
            "predictions": self.predictions,
            "errors": self.errors,
            "error_rate": _round(self.error_rate),
            "p99_ms": _round(self.p99_ms),
            "mean_confidence": _round(self.mean_confidence),
            "labelled": self.labelled,
            "accuracy": _round(self.accuracy),
            "mae": _round(self.mae),
        }


@dataclass(frozen=True)
class Comparison:
    canary: GroupStats
    control: GroupStats

    def to_dict(self) -> dict[str, Any]:
        return {"canary": self.canary.to_dict(), "control": self.control.to_dict()}


@dataclass(frozen=True)
class Criteria:
    """What one rollout is judged by (stored with the rollout, so a restart judges the same)."""

    soak_s: float
    deadline_s: float
    min_labels: int
    thresholds: Thresholds


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str
    comparison: Comparison
    missing: tuple[str, ...] = ()  # what keeps a promotion from happening, one phrase each


def choose_canary(eligible: Iterable[str], pct: float, salt: str) -> tuple[str, ...]:
    """``pct`` % of ``eligible`` (at least one, and one fewer than all when there are two or
    more, so a control group remains), chosen by a hash of ``salt`` and the device id: the same
    version picks the same devices every time, another version most likely others."""
    devices = sorted(set(eligible))
    if not devices:
        return ()
    n = max(1, math.ceil(len(devices) * pct / 100.0))
    if len(devices) > 1:
        n = min(n, len(devices) - 1)
    ranked = sorted(devices, key=lambda d: hashlib.sha256(f"{salt}/{d}".encode()).hexdigest())
    return tuple(sorted(ranked[:n]))


# chi-square quantiles at 0.999 for 1..10 degrees of freedom
_CHI2_999 = (10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12, 27.88, 29.59)


def drift_noise(live: LiveModel, before: LiveModel | None) -> float | None:
    """How large a PSI two samples of these sizes reach by chance alone (99.9 %).

    Between two multinomial samples of sizes n and m from the same distribution over k
    classes, PSI (a symmetric KL divergence) is about (1/n + 1/m) x chi-square(k - 1): with 30
    predictions against 100 over 3 classes, PSI passes 0.25 by chance alone quite often (an
    end-to-end run rolled a good canary back at PSI 0.29). ``None`` without counts on both
    sides.
    """
    if before is None or not live.classes or not before.classes:
        return None
    n, m = sum(live.classes.values()), sum(before.classes.values())
    if n <= 0 or m <= 0:
        return None
    df = max(1, len(set(live.classes) | set(before.classes)) - 1)
    quantile = _CHI2_999[df - 1] if df <= 10 else df + 3.09 * math.sqrt(2 * df)
    return quantile * (1 / n + 1 / m)


def aggregate(
    lives: Iterable[LiveModel],
    devices: int = 0,
    reporting: int = 0,
    noise: Sequence[tuple[LiveModel, float]] = (),
) -> GroupStats:
    """Sum the counts and weigh the means of several devices' metrics for one version
    (``noise``: each device's drift noise margin, weighed like its PSI)."""
    items = list(lives)
    predictions = sum(m.predictions for m in items)
    errors = sum(m.errors for m in items)
    calls = predictions + errors
    labelled = sum(m.labelled for m in items)
    return GroupStats(
        devices=devices,
        reporting=reporting,
        predictions=predictions,
        errors=errors,
        error_rate=errors / calls if calls else None,
        p50_ms=_weighted(items, lambda m: m.p50_ms, lambda m: m.predictions),
        p99_ms=_weighted(items, lambda m: m.p99_ms, lambda m: m.predictions),
        mean_confidence=_weighted(items, lambda m: m.mean_confidence, lambda m: m.predictions),
        drift_psi=_weighted(items, lambda m: m.drift_psi, lambda m: m.predictions),
        drift_noise=_weighted_pairs(noise),
        labelled=labelled,
        accuracy=_weighted(items, lambda m: m.accuracy, lambda m: m.labelled),
        mae=_weighted(items, lambda m: m.mae, lambda m: m.labelled),
    )


def group(samples: Sequence[Sample]) -> GroupStats:
    """A group's figures: every sample's last report counts, ``reporting`` only online ones."""
    lives = [s.live for s in samples if s.live is not None]
    noise = [
        (s.live, n)
        for s in samples
        if s.live is not None
        and s.live.drift_psi is not None
        and (n := drift_noise(s.live, s.before)) is not None
    ]
    return aggregate(lives, len(samples), sum(s.reporting for s in samples), noise)


def compare(canary: Sequence[Sample], control: Sequence[Sample]) -> Comparison:
    return Comparison(group(canary), group(control))


def evaluate(
    canary: Sequence[Sample], control: Sequence[Sample], criteria: Criteria, elapsed_s: float
) -> Verdict:
    """The decision for a canary ``elapsed_s`` seconds after it started (module docstring)."""
    comparison = compare(canary, control)
    c, k = comparison.canary, comparison.control
    crossed, passed = _judge(c, k, criteria)
    if crossed:
        return Verdict("rollback", crossed, comparison)
    missing = tuple(_missing(canary, c, criteria))
    if elapsed_s < criteria.soak_s:
        waiting = f"soaking: {duration(elapsed_s)} of {duration(criteria.soak_s)}"
        detail = "; ".join((*missing, *passed)) or _counts(c)
        return Verdict("wait", f"{waiting}; {detail}", comparison, missing)
    if not missing:
        checks = "; ".join(passed) or "no threshold could be compared"
        reason = (
            f"soak of {duration(criteria.soak_s)} passed with {c.reporting}/{c.devices} canary "
            f"devices reporting, {c.predictions} predictions and {c.labelled} labels; {checks}"
        )
        return Verdict("promote", reason, comparison)
    if elapsed_s >= criteria.deadline_s:
        reason = (
            f"insufficient data after {duration(elapsed_s)} (deadline "
            f"{duration(criteria.deadline_s)}): " + "; ".join(missing)
        )
        return Verdict("rollback", reason, comparison, missing)
    left = duration(criteria.deadline_s - elapsed_s)
    reason = f"waiting for data ({left} to the deadline): " + "; ".join(missing)
    return Verdict("wait", reason, comparison, missing)


def _weighted_pairs(pairs: Sequence[tuple[LiveModel, float]]) -> float | None:
    """Mean of the values, weighed by each LiveModel's predictions (as PSI is)."""
    total = sum(m.predictions for m, _ in pairs)
    if not pairs or total <= 0:
        return None
    return sum(m.predictions * v for m, v in pairs) / total


def _drop_se(p1: float, n1: int, p2: float, n2: int) -> float:
    """Standard error of the difference of two accuracies (proportions), with the
    Agresti-Caffo adjustment (one success and one failure added to each group) so that an
    accuracy of exactly 0 or 1 on few labels still has a width."""
    a1, a2 = (p1 * n1 + 1) / (n1 + 2), (p2 * n2 + 1) / (n2 + 2)
    return math.sqrt(a1 * (1 - a1) / (n1 + 2) + a2 * (1 - a2) / (n2 + 2))


def _judge(c: GroupStats, k: GroupStats, criteria: Criteria) -> tuple[str, list[str]]:
    """The first threshold crossed (a reason), else the checks that passed (phrases)."""
    t = criteria.thresholds
    passed: list[str] = []
    labels = criteria.min_labels
    judged_labels = labels > 0 and c.labelled >= labels and k.labelled >= labels
    if judged_labels and t.max_accuracy_drop is not None and None not in (c.accuracy, k.accuracy):
        assert c.accuracy is not None and k.accuracy is not None
        drop = k.accuracy - c.accuracy
        margin = t.confidence_z * _drop_se(c.accuracy, c.labelled, k.accuracy, k.labelled)
        said = (
            f"canary accuracy {c.accuracy:.2f} on {c.labelled} labels vs control "
            f"{k.accuracy:.2f} on {k.labelled}: drop {drop:.3f}"
        )
        if drop - margin > t.max_accuracy_drop:
            return f"{said} > {t.max_accuracy_drop:g} + {margin:.3f} (noise margin)", passed
        passed.append(f"{said} <= {t.max_accuracy_drop:g} + {margin:.3f} (noise margin)")
    if judged_labels and t.max_mae_increase is not None and None not in (c.mae, k.mae):
        assert c.mae is not None and k.mae is not None
        limit = k.mae * (1 + t.max_mae_increase)
        said = (
            f"canary MAE {c.mae:.3g} on {c.labelled} labels vs control {k.mae:.3g} on {k.labelled}"
        )
        if c.mae > limit:
            rise = f"+{c.mae / k.mae - 1:.0%}" if k.mae > 0 else "from 0"
            return f"{said}: {rise} > +{t.max_mae_increase:.0%}", passed
        passed.append(f"{said} (limit {limit:.3g})")
    if labels > 0 and c.labelled >= labels and k.labelled < labels:
        passed.append(f"accuracy not compared: control has {k.labelled} labels < {labels}")
    if c.predictions + c.errors < t.min_predictions:
        return "", passed
    if t.max_error_rate is not None and c.error_rate is not None:
        said = (
            f"canary error rate {c.error_rate:.3f} ({c.errors} errors in "
            f"{c.predictions + c.errors} calls; control {_fmt(k.error_rate, '.3f')})"
        )
        if c.error_rate > t.max_error_rate:
            return f"{said} > {t.max_error_rate:g}", passed
        passed.append(f"error rate {c.error_rate:.3f} <= {t.max_error_rate:g}")
    latency = t.max_p99_ratio is not None and k.predictions >= t.min_predictions
    if latency and c.p99_ms is not None and k.p99_ms:
        assert t.max_p99_ratio is not None
        ratio = c.p99_ms / k.p99_ms
        said = f"canary p99 latency {c.p99_ms:.1f} ms vs control {k.p99_ms:.1f} ms: {ratio:.1f}x"
        if ratio > t.max_p99_ratio and c.p99_ms > t.p99_floor_ms:
            return f"{said} > {t.max_p99_ratio:g}x (and over {t.p99_floor_ms:g} ms)", passed
        passed.append(f"p99 {c.p99_ms:.1f} ms ({ratio:.1f}x)")
    if t.max_drift_psi is not None and c.drift_psi is not None:
        said = f"canary class drift PSI {c.drift_psi:.2f} against the previous version"
        noise = c.drift_noise or 0.0
        shown = f" + {noise:.2f} (noise margin)" if c.drift_noise is not None else ""
        if c.drift_psi - noise > t.max_drift_psi:
            return f"{said} > {t.max_drift_psi:g}{shown}", passed
        passed.append(f"drift PSI {c.drift_psi:.2f} <= {t.max_drift_psi:g}{shown}")
    return "", passed


def _missing(canary: Sequence[Sample], c: GroupStats, criteria: Criteria) -> list[str]:
    """What a promotion still lacks: devices without data, then too few predictions or labels."""
    out: list[str] = []
    for s in canary:
        if not s.online:
            out.append(f"{s.device_id} is offline")
        elif not s.serving:
            out.append(f"{s.device_id} does not serve the new version yet")
        elif s.live is None:
            out.append(f"{s.device_id} has not reported metrics for the new version")
    minimum = criteria.thresholds.min_predictions
    if c.predictions < minimum:
        out.append(f"canary has {c.predictions} predictions < min_predictions {minimum}")
    if criteria.min_labels > 0 and c.labelled < criteria.min_labels:
        out.append(
            f"canary has {c.labelled} labelled predictions < min_labels {criteria.min_labels}"
        )
    return out


def _counts(c: GroupStats) -> str:
    return f"{c.reporting}/{c.devices} canary devices reporting, {c.predictions} predictions"


def _weighted(
    items: Sequence[LiveModel],
    value: Callable[[LiveModel], float | None],
    weight: Callable[[LiveModel], int],
) -> float | None:
    pairs = [(v, weight(m)) for m in items if (v := value(m)) is not None and weight(m) > 0]
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total else None


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def duration(seconds: float) -> str:
    """``90`` -> ``"1m30s"``, ``600`` -> ``"10m"``, ``3600`` -> ``"1h"``: how reasons say time."""
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    parts = [f"{h}h" if h else "", f"{m}m" if m else "", f"{sec}s" if sec else ""]
    return "".join(parts) or "0s"
