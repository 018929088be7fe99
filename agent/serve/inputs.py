"""``POST /api/predict`` bodies to a float32 batch, or a ``RequestInputError`` naming the field.

The fast path is one ``json.loads`` and one ``np.asarray``. Anything unusual (a ragged list, a
wrong shape, a non-number, ``true``/``false`` anywhere in the body, since NumPy would silently
turn booleans into numbers) goes through :func:`_validate`, which walks the value and names the
first offending element, e.g. ``instances[2][4]: expected a number. Received: a string``.
Python's ``json`` accepts ``NaN`` and ``Infinity``; the finite check afterwards rejects them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.errors import kind_of as _kind
from models.errors import PredictInputError
from models.manifest import Manifest
from models.spec import InputSpec

KEYS = ("features", "instances", "readings")
ONE_OF = "exactly one of features, instances or readings"


class RequestInputError(PredictInputError):
    """A request body the model cannot take; ``field`` names where, ``status`` the HTTP code."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = f"{field}: {message}"
        self.status = status


@dataclass(frozen=True, slots=True)
class Parsed:
    batch: np.ndarray  # (N, *input shape) float32, finite
    single: bool  # features or readings: answer with one result, not a list


def parse_body(body: bytes, manifest: Manifest) -> Parsed:
    if not body.strip():
        raise RequestInputError("body", f"expected a JSON object with {ONE_OF}. Received: nothing")
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise RequestInputError(
            "body", f"expected JSON. Received invalid JSON: {exc}", 400
        ) from None
    if not isinstance(payload, dict):
        raise RequestInputError("body", f"expected a JSON object. Received: {_kind(payload)}")
    for key in payload:
        if key not in KEYS:
            raise RequestInputError(key, f"expected {ONE_OF}. Received: an unknown field")
    given = [k for k in KEYS if k in payload]
    if len(given) != 1:
        received = " and ".join(given) if given else "an empty object"
        raise RequestInputError("body", f"expected {ONE_OF}. Received: {received}")
    key, value = given[0], payload[given[0]]
    spec = manifest.input
    if key == "readings":
        return Parsed(_readings(value, spec), single=True)
    suspicious = b"true" in body or b"false" in body
    batch = _to_array(value, key, spec, batch=key == "instances", suspicious=suspicious)
    _check_finite(batch, key, single=key == "features")
    return Parsed(batch, single=key == "features")


def _to_array(
    value: Any, field: str, spec: InputSpec, *, batch: bool, suspicious: bool
) -> np.ndarray:
    shape = spec.shape
    if not suspicious and isinstance(value, list):
        try:
            arr = np.asarray(value)
        except ValueError:  # ragged
            arr = None
        if arr is not None and arr.dtype.kind in "iuf":
            if batch and arr.ndim == len(shape) + 1 and arr.shape[0] and arr.shape[1:] == shape:
                return _float32(arr)
            if not batch and arr.shape == shape:
                return _float32(arr[np.newaxis])
    if batch:
        if not isinstance(value, list) or not value:
            raise RequestInputError(
                field,
                f"expected a non-empty list of samples of shape {list(shape)}. "
                f"Received: {_kind(value)}",
            )
        for i, item in enumerate(value):
            _validate(item, f"{field}[{i}]", shape, spec.feature_names)
    else:
        if _looks_like_batch(value, shape):
            raise RequestInputError(
                field,
                f"expected one sample of shape {list(shape)}. Received a batch of "
                f"{len(value)}; send several samples as instances",
            )
        _validate(value, field, shape, spec.feature_names)
    try:  # structurally valid: only integers beyond float range get here
        arr = np.asarray(value, np.float64)
    except (OverflowError, ValueError, TypeError):
        raise RequestInputError(field, "expected finite numbers. Received a huge integer") from None
    return _float32(arr if batch else arr[np.newaxis])


def _validate(value: Any, path: str, shape: Sequence[int], names: Sequence[str]) -> None:
    """Raise at the first element that is not a list of the right length or not a number."""
    if not shape:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RequestInputError(path, f"expected a number. Received: {_kind(value)}")
        return
    hint = f" ({', '.join(names)})" if len(shape) == 1 and names and len(names) <= 16 else ""
    if not isinstance(value, list):
        what = "numbers" if len(shape) == 1 else "lists"
        raise RequestInputError(
            path, f"expected a list of {shape[0]} {what}{hint}. Received: {_kind(value)}"
        )
    if len(value) != shape[0]:
        raise RequestInputError(
            path,
            f"expected {shape[0]} items{hint} (shape {list(shape)}). Received: {len(value)} items",
        )
    for i, item in enumerate(value):
        _validate(item, f"{path}[{i}]", shape[1:], names)


def _readings(value: Any, spec: InputSpec) -> np.ndarray:
    names = spec.feature_names
    if len(spec.shape) != 1 or spec.window is not None or not names:
        raise RequestInputError(
            "readings",
            f"expected features or instances for this model: it takes {describe(spec)}, and "
            "named readings fit only single-row models. GET /api/predict/latest predicts on "
            "the newest data in the local store",
        )
    if not isinstance(value, dict):
        raise RequestInputError(
            "readings",
            f"expected an object of feature names to numbers. Received: {_kind(value)}",
        )
    missing = [n for n in names if n not in value]
    unknown = [k for k in value if k not in names]
    if missing or unknown:
        problems = [f"missing {', '.join(missing)}" if missing else ""]
        problems.append(f"unknown {', '.join(unknown)}" if unknown else "")
        raise RequestInputError(
            "readings",
            f"expected exactly the model's features ({', '.join(names)}). "
            f"Received: {'; '.join(p for p in problems if p)}",
        )
    for name in names:
        v = value[name]
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise RequestInputError(f"readings.{name}", f"expected a number. Received: {_kind(v)}")
    try:
        row = _float32(np.asarray([[value[n] for n in names]], np.float64))
    except OverflowError:
        raise RequestInputError(
            "readings", "expected finite numbers. Received a huge integer"
        ) from None
    bad = np.flatnonzero(~np.isfinite(row[0]))
    if bad.size:
        raise RequestInputError(
            f"readings.{names[bad[0]]}",
            f"expected a finite number within float32 range. Received: {value[names[bad[0]]]}",
        )
    return row


def _check_finite(batch: np.ndarray, field: str, *, single: bool) -> None:
    ok = np.isfinite(batch)
    if ok.all():
        return
    index = [int(i) for i in np.argwhere(~ok)[0]]
    where = field + "".join(f"[{i}]" for i in (index[1:] if single else index))
    raise RequestInputError(
        where, f"expected a finite number within float32 range. Received: {batch[tuple(index)]}"
    )


def describe(spec: InputSpec) -> str:
    names = ", ".join(spec.feature_names)
    if spec.window is not None:
        return f"windows of {spec.window} rows x {spec.shape[-1]} features ({names})"
    if len(spec.shape) == 3:
        return f"{spec.shape[0]}x{spec.shape[1]} grayscale images"
    return f"shape {list(spec.shape)}"


def _float32(arr: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return arr.astype(np.float32)


def _looks_like_batch(value: Any, shape: tuple[int, ...]) -> bool:
    try:
        return isinstance(value, list) and bool(value) and np.shape(value)[1:] == shape
    except ValueError:  # ragged
        return False
