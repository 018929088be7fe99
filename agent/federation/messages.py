"""What a device may say in a federated round: the declared metric keys and error codes.

Public schema (the coordinator imports it). A reply carries exactly one ArrayRecord, the model's
arrays in ``model.get_weights()`` order, and one MetricRecord with exactly these keys; nothing
else leaves the board. Every device of a run reports the same keys (Flower's aggregation needs
that), so keys that do not apply are still present.

With ``secure-aggregation`` the train reply takes Flower's legacy FitRes layout: the same keys
as FitRes metrics, the example count, and instead of arrays the masked update SecAgg+ sends
(docs/privacy.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from math import isfinite

TRAIN_KEYS = (
    "num-examples",
    "loss",
    "metric",  # accuracy for classify, MAE for regress/forecast, the loss again for anomaly
    "val_loss",
    "val_metric",
    "duration_s",
    "peak_rss_mb",
)
EVALUATE_KEYS = (
    "num-examples",
    "loss",
    "metric",
    "personal_loss",  # equal to loss unless personalisation ran
    "personal_metric",
    "personalized",  # 1.0 when the personalised model beat the global one locally
)


class ErrorCode(IntEnum):
    """``Error.code`` of a device's error reply; the ServerApp counts these as failures."""

    GATE_CLOSED = 601  # too hot, throttled, outside allowed hours
    OVER_BUDGET = 602  # the trainer was stopped over memory or time
    TRAINER_FAILED = 603  # the trainer crashed or could not be reached
    NO_DATA = 604  # too little usable local data
    BAD_REQUEST = 605  # the round's config or arrays don't fit the model


class MessageSchemaError(ValueError):
    pass


def check_metrics(kind: str, metrics: Mapping[str, float]) -> dict[str, float]:
    """The metrics in declared order; raise if a key is missing, extra or not a finite number."""
    keys = TRAIN_KEYS if kind == "train" else EVALUATE_KEYS
    extra = sorted(set(metrics) - set(keys))
    missing = [k for k in keys if k not in metrics]
    if extra or missing:
        raise MessageSchemaError(
            f"expected exactly the {kind} metric keys {list(keys)}. "
            f"Received: extra={extra}, missing={missing}"
        )
    out: dict[str, float] = {}
    for key in keys:
        value = metrics[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not isfinite(value):
            raise MessageSchemaError(f"expected a finite number. Received: {key}={value!r}")
        out[key] = float(value)
    return out
