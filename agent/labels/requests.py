"""Label bodies (``POST /api/labels``, the MQTT label topic) to checked items, or a
:class:`LabelError` naming the field.

Three forms, one schema::

    {"prediction_id": "3f9a01c2-1b", "label": "occupied"}
    {"timestamp": 1717430400.5, "label": 21.5}
    {"labels": [{"prediction_id": ...}, {"timestamp": ...}, ...]}   # 1..max_batch, all or none

A label is checked against the serving model (:func:`check_label`):

* classification: one of the manifest's class labels (a string);
* regression and forecast: a finite number for a one-output model, else an object giving a
  number for each output name. Each value must lie within its output's *sane range*,
  ``mean ± max(10 * std, 1)`` of the training targets recorded in the manifest's
  normalisation statistics (``target_mean``/``target_variance``; for a forecast without them,
  the input statistics of the same channel). Ten standard deviations admit any plausible
  value and refuse a slip such as ``2150`` for ``21.50``. Without statistics, any number
  within float32 range (what the store keeps) is accepted;
* anomaly models take no labels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.errors import AgentError
from agent.errors import kind_of as _kind
from models.manifest import Manifest
from models.spec import Task

MAX_BATCH = 100
MAX_ID = 64
FLOAT32_MAX = 3.4028234663852886e38
SIGMAS = 10.0
MIN_HALF_WIDTH = 1.0
ITEM_KEYS = ("prediction_id", "timestamp", "label")


class LabelError(AgentError):
    """A label refused: ``status`` (HTTP), ``field`` (e.g. ``labels[3].label``), ``reason`` (a
    token for events: no value in it, since labels never leave the board raw)."""

    def __init__(
        self,
        status: int,
        field: str,
        message: str,
        reason: str,
        *,
        retry_after_s: int | None = None,
    ) -> None:
        self.status = status
        self.field = field
        self.detail = f"{field}: {message}"
        self.reason = reason
        self.retry_after_s = retry_after_s
        super().__init__(self.detail)


@dataclass(frozen=True, slots=True)
class LabelItem:
    """One label as sent (structurally checked). ``where`` prefixes field names: ``""`` or
    ``"labels[3]."``."""

    where: str
    prediction_id: str | None
    timestamp: float | None
    label: Any


@dataclass(frozen=True, slots=True)
class Checked:
    """A label the serving model takes: a class, or values in the model's output order."""

    cls: str | None
    values: tuple[float, ...] | None

    def text(self) -> str:
        """As the prediction log keeps it."""
        return self.cls if self.cls is not None else json.dumps(list(self.values or ()))


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise LabelError(422, "body", "expected a JSON object. Received: nothing", "invalid")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise LabelError(
            400, "body", f"expected JSON. Received invalid JSON: {exc}", "not_json"
        ) from None


def cost(payload: Any, max_batch: int) -> int:
    """Tokens a body takes from the rate limit: one per label; one for anything malformed."""
    if isinstance(payload, dict) and isinstance(payload.get("labels"), list):
        return min(max(1, len(payload["labels"])), max_batch)
    return 1


def parse_items(payload: Any, max_batch: int) -> list[LabelItem]:
    if not isinstance(payload, dict):
        raise LabelError(
            422, "body", f"expected a JSON object. Received: {_kind(payload)}", "invalid"
        )
    if "labels" in payload:
        extra = [k for k in payload if k != "labels"]
        if extra:
            raise LabelError(
                422,
                extra[0],
                "expected labels alone in a batch. Received: an extra field",
                "invalid",
            )
        batch = payload["labels"]
        if not isinstance(batch, list) or not 1 <= len(batch) <= max_batch:
            received = f"{len(batch)} items" if isinstance(batch, list) else _kind(batch)
            raise LabelError(
                422,
                "labels",
                f"expected a list of 1 to {max_batch} labels. Received: {received}",
                "invalid",
            )
        return [_item(value, f"labels[{i}].") for i, value in enumerate(batch)]
    return [_item(payload, "")]


def _item(value: Any, where: str) -> LabelItem:
    here = where[:-1] or "body"
    if not isinstance(value, dict):
        raise LabelError(422, here, f"expected a JSON object. Received: {_kind(value)}", "invalid")
    for key in value:
        if key not in ITEM_KEYS:
            raise LabelError(
                422,
                f"{where}{key}",
                "expected prediction_id or timestamp, and label. Received: an unknown field",
                "invalid",
            )
    keys = [k for k in ("prediction_id", "timestamp") if k in value]
    if len(keys) != 1:
        received = "both" if keys else "neither"
        raise LabelError(
            422,
            here,
            f"expected exactly one of prediction_id or timestamp. Received: {received}",
            "invalid",
        )
    if "label" not in value:
        raise LabelError(422, f"{where}label", "expected a label. Received: none", "invalid")
    prediction_id = value.get("prediction_id")
    if prediction_id is not None and not (
        isinstance(prediction_id, str) and 0 < len(prediction_id) <= MAX_ID
    ):
        raise LabelError(
            422,
            f"{where}prediction_id",
            f"expected a prediction id from POST /api/predict (a string of at most {MAX_ID} "
            f"characters). Received: {_kind(prediction_id)}",
            "invalid",
        )
    timestamp = value.get("timestamp")
    if "timestamp" in value and not _finite(timestamp, low=0.0):
        raise LabelError(
            422,
            f"{where}timestamp",
            f"expected a Unix time in seconds (a finite number >= 0). Received: {_kind(timestamp)}",
            "invalid",
        )
    return LabelItem(
        where, prediction_id, None if timestamp is None else float(timestamp), value["label"]
    )


def check_label(item: LabelItem, manifest: Manifest) -> Checked:
    """``item.label`` as the serving model's class or output values, else ``LabelError`` 422."""
    field = f"{item.where}label"
    label = item.label
    task = manifest.task
    if task is Task.CLASSIFY:
        classes = class_names(manifest)
        if not isinstance(label, str) or label not in classes:
            shown = ", ".join(repr(c) for c in classes[:16]) + (" .." if len(classes) > 16 else "")
            raise LabelError(
                422,
                field,
                f"expected one of the model's classes ({shown}). Received: {_kind(label)}",
                "out_of_range",
            )
        return Checked(label, None)
    if task not in (Task.REGRESS, Task.FORECAST):
        raise LabelError(
            422,
            field,
            "expected a model that takes labels (classify, regress or forecast). Received: a "
            f"label for the serving {task.value} model",
            "no_labels",
        )
    ranges = value_ranges(manifest)
    names = list(ranges)
    if len(names) == 1 and not isinstance(label, dict):
        return Checked(None, (_value(label, field, ranges[names[0]]),))
    if not isinstance(label, dict):
        raise LabelError(
            422,
            field,
            f"expected an object with a number for each output ({', '.join(names)}). "
            f"Received: {_kind(label)}",
            "invalid",
        )
    missing = [n for n in names if n not in label]
    unknown = [k for k in label if k not in ranges]
    if missing or unknown:
        what = "; ".join(
            p
            for p in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unknown {', '.join(map(str, unknown))}" if unknown else "",
            )
            if p
        )
        raise LabelError(
            422,
            field,
            f"expected exactly the outputs {', '.join(names)}. Received: {what}",
            "invalid",
        )
    return Checked(None, tuple(_value(label[n], f"{field}.{n}", ranges[n]) for n in names))


def label_schema(manifest: Manifest) -> dict[str, Any]:
    """The JSON schema of a label the serving model takes (:func:`check_label`'s rules), which
    ``/openapi.json`` shows while the model serves."""
    task = manifest.task
    if task is Task.CLASSIFY:
        return {"type": "string", "enum": list(class_names(manifest))}
    if task not in (Task.REGRESS, Task.FORECAST):
        return {"not": {}, "description": f"A {task.value} model takes no labels."}
    ranges = value_ranges(manifest)
    numbers = {
        name: {"type": "number", "minimum": low, "maximum": high}
        for name, (low, high) in ranges.items()
    }
    whole = {
        "type": "object",
        "properties": numbers,
        "required": list(numbers),
        "additionalProperties": False,
    }
    if len(numbers) == 1:
        return {"anyOf": [next(iter(numbers.values())), whole]}
    return whole


def class_names(manifest: Manifest) -> tuple[str, ...]:
    """The classes as ``agent.serve.results`` names them (``"0"``, ``"1"``.. without labels)."""
    if manifest.labels:
        return tuple(manifest.labels)
    return tuple(str(i) for i in range(_outputs(manifest)))


def output_names(manifest: Manifest) -> tuple[str, ...]:
    """The value names as ``agent.serve.results`` names them (``y0``.. without names)."""
    if manifest.outputs:
        return tuple(manifest.outputs)
    return tuple(f"y{i}" for i in range(_outputs(manifest)))


def value_ranges(manifest: Manifest) -> dict[str, tuple[float, float]]:
    """Each output's accepted label range (see the module docstring)."""
    names = output_names(manifest)
    norm = manifest.normalization
    mean, var = _stats(norm, "target_", len(names))
    if mean is None and manifest.task is Task.FORECAST:
        features = list(manifest.input.feature_names)
        inputs = _stats(norm, "", len(features))
        if inputs[0] is not None and inputs[1] is not None and set(names) <= set(features):
            mean = [inputs[0][features.index(n)] for n in names]
            var = [inputs[1][features.index(n)] for n in names]
    ranges: dict[str, tuple[float, float]] = {}
    for i, name in enumerate(names):
        if mean is None or var is None:
            ranges[name] = (-FLOAT32_MAX, FLOAT32_MAX)
            continue
        half = max(SIGMAS * math.sqrt(var[i]), MIN_HALF_WIDTH)
        ranges[name] = (mean[i] - half, mean[i] + half)
    return ranges


def _stats(
    norm: Mapping[str, Any], prefix: str, n: int
) -> tuple[list[float] | None, list[float] | None]:
    mean, var = norm.get(f"{prefix}mean"), norm.get(f"{prefix}variance")
    if not (isinstance(mean, list) and isinstance(var, list) and len(mean) == len(var) == n):
        return None, None
    if not (all(_finite(v) for v in mean) and all(_finite(v, low=0.0) for v in var)):
        return None, None
    return [float(v) for v in mean], [float(v) for v in var]


def _value(value: Any, field: str, bounds: tuple[float, float]) -> float:
    low, high = bounds
    if not _finite(value):
        raise LabelError(
            422, field, f"expected a finite number. Received: {_kind(value)}", "invalid"
        )
    if not low <= value <= high:
        raise LabelError(
            422,
            field,
            f"expected a number in [{low:.6g}, {high:.6g}] (the training targets' mean ± "
            f"{SIGMAS:g} standard deviations). Received: {value!r}",
            "out_of_range",
        )
    return float(value)


def _outputs(manifest: Manifest) -> int:
    shape = manifest.output_tensor.shape
    return int(shape[-1]) if shape else 1


def _finite(value: Any, *, low: float | None = None) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        ok = math.isfinite(value)
    except OverflowError:  # an int beyond float range
        return False
    return ok and (low is None or value >= low)
