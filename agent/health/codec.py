"""Decode JSON-shaped data into frozen dataclasses, naming the first wrong field.

The payload types in :mod:`agent.health.schema` are declared once as dataclasses; this module
walks their type hints so each field is checked the same way:

    int / float / str / bool          exact JSON type (bool is not an int, NaN is refused; an
                                      int fits 64 bits signed or unsigned, a float a double)
    X | None                          null allowed
    Literal["a", "b"]                 one of the listed values
    tuple[T, ...], tuple[T1, T2]      a JSON list
    a nested dataclass                a JSON object, decoded recursively
    dict[str, Scalar]                 a flat object of scalars (event data)
    dict[str, int] / dict[str, float] a flat object of numbers (class counts)

Bounds come from field metadata (``field(metadata=bounds(low=0, high=100))``). Unknown keys are
refused, so a payload cannot smuggle extra data (e.g. raw sensor readings) past the validator.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from agent.errors import AgentError

T = TypeVar("T")

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_STR = 256
MAX_ITEMS = 64
INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # 64-bit, signed or not (Flower node ids are unsigned)
_TOKEN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class SchemaError(AgentError, ValueError):
    """A message payload or topic does not match the contract.

    ``health.memory.pct: expected a number in [0, 100]. Received: pct=120``
    """

    def __init__(self, field: str, value: Any, expected: str) -> None:
        self.field = field
        self.value = value
        self.expected = expected
        leaf = field.rsplit(".", 1)[-1]
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{field}: expected {expected}. Received: {leaf}={shown}")


def bounds(
    *, low: float | None = None, high: float | None = None, token: bool = False
) -> dict[str, Any]:
    """Field metadata: numeric bounds, or a token check for short lowercase strings.

    ``pct: float = field(metadata=bounds(low=0, high=100))``
    """
    return {"low": low, "high": high, "token": token}


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def decode(cls: type[T], value: Any, path: str) -> T:
    """``value`` (parsed JSON) as an instance of the dataclass ``cls``; else ``SchemaError``."""
    if not isinstance(value, Mapping):
        raise SchemaError(path, value, "a JSON object")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(value) - set(fields))
    if unknown:
        key = str(unknown[0])
        allowed = ", ".join(fields)
        raise SchemaError(f"{path}.{key}", value[key], f"no such field; allowed: {allowed}")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        where = f"{path}.{name}"
        if name not in value:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SchemaError(where, None, "a value (this field is required)")
            continue
        kwargs[name] = _check(_value(hints[name], value[name], where), f.metadata, where)
    return cls(**kwargs)


def _value(tp: Any, value: Any, path: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        inner = [t for t in options if t is not type(None)]
        if len(inner) == 1:
            return _value(inner[0], value, path)
        for t in inner:
            try:
                return _value(t, value, path)
            except SchemaError:
                continue
        raise SchemaError(path, value, f"one of {_describe(tp)}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices or isinstance(value, bool):
            raise SchemaError(path, value, f"one of {', '.join(map(repr, choices))}")
        return value
    if origin is tuple:
        return _tuple(get_args(tp), value, path)
    if origin is dict:
        out = _flat_dict(value, path)
        args = get_args(tp)
        if len(args) == 2 and args[1] in (int, float):  # dict[str, int]: counts
            return {k: _scalar(args[1], v, f"{path}.{k}") for k, v in out.items()}
        return out
    if dataclasses.is_dataclass(tp):
        return decode(tp, value, path)  # type: ignore[arg-type]
    return _scalar(tp, value, path)


def _scalar(tp: Any, value: Any, path: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise SchemaError(path, value, "true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int) or not _fits(value):
            raise SchemaError(path, value, "an integer of at most 64 bits")
        return value
    if tp is float:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        # an int is checked for size first: math.isfinite(10**400) raises OverflowError
        if not number or not (_fits(value) if isinstance(value, int) else math.isfinite(value)):
            raise SchemaError(path, value, "a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str) or len(value) > MAX_STR:
            raise SchemaError(path, value, f"a string of at most {MAX_STR} characters")
        return value
    raise TypeError(f"{path}: unsupported schema type {tp!r}")  # a bug in the schema itself


def _fits(value: int) -> bool:
    return INT_MIN <= value <= INT_MAX


def _tuple(args: tuple[Any, ...], value: Any, path: str) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise SchemaError(path, value, "a JSON list")
    if len(args) == 2 and args[1] is Ellipsis:
        if len(value) > MAX_ITEMS:
            raise SchemaError(path, value, f"a list of at most {MAX_ITEMS} items")
        return tuple(_value(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise SchemaError(path, value, f"a list of exactly {len(args)} items")
    pairs = enumerate(zip(args, value, strict=True))
    return tuple(_value(t, v, f"{path}[{i}]") for i, (t, v) in pairs)


def _flat_dict(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, Mapping) or len(value) > MAX_ITEMS:
        raise SchemaError(path, value, f"an object of at most {MAX_ITEMS} scalar values")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str) or len(key) > 64:
            raise SchemaError(path, key, "keys that are strings of at most 64 characters")
        if item is None or isinstance(item, bool | str):
            out[key] = _scalar(str, item, f"{path}.{key}") if isinstance(item, str) else item
        elif isinstance(item, int | float):
            out[key] = _scalar(type(item), item, f"{path}.{key}")
        else:
            raise SchemaError(f"{path}.{key}", item, "a string, number, boolean or null")
    return out


def _check(value: Any, meta: Mapping[str, Any], path: str) -> Any:
    if value is None or not meta:
        return value
    if isinstance(value, tuple):
        for i, item in enumerate(value):
            _check(item, meta, f"{path}[{i}]")
        return value
    low, high = meta.get("low"), meta.get("high")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and ((low is not None and value < low) or (high is not None and value > high)):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise SchemaError(path, value, f"a number in [{lo}, {hi}]")
    if meta.get("token") and not (isinstance(value, str) and _TOKEN.match(value)):
        raise SchemaError(path, value, "a lowercase token ([a-z][a-z0-9_]*, at most 32 chars)")
    return value


def _describe(tp: Any) -> str:
    return " | ".join(getattr(t, "__name__", str(t)) for t in get_args(tp))


def encode(obj: Any) -> str:
    """Compact JSON for a payload dataclass (tuples become lists; NaN is refused)."""
    return json.dumps(dataclasses.asdict(obj), separators=(",", ":"), allow_nan=False)


def parse_json(data: str | bytes | bytearray, what: str) -> Any:
    """Parse a payload's JSON, refusing oversized, non-UTF-8 or non-JSON bytes.

    Bytes are decoded as UTF-8 first: ``json.loads`` alone would also take UTF-16 and UTF-32,
    which the contract (and the coordinator, which stores the raw text) does not.
    """
    if len(data) > MAX_PAYLOAD_BYTES:
        raise SchemaError(what, f"<{len(data)} bytes>", f"at most {MAX_PAYLOAD_BYTES} bytes")
    try:
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSON, UTF-8 or nesting beyond the parser
        raise SchemaError(
            what,
            bytes(data[:60]) if not isinstance(data, str) else data[:60],
            f"UTF-8 JSON ({exc})",
        ) from None
