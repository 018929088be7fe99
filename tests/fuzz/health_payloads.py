"""Hypothesis strategies for health payloads, built from the schema's own dataclasses.

``valid(Health)`` draws JSON objects the codec must accept: every field's type hint and bounds
(``field(metadata=bounds(...))``) are followed, optional fields come and go. ``documents`` draws
``(kind, object)`` pairs for the four payload kinds; ``json_values`` draws arbitrary JSON.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union

from hypothesis import strategies as st

from agent.health import codec
from agent.health.schema import PAYLOADS

KINDS = tuple(PAYLOADS)


def _scalar(tp: Any, meta: dict[str, Any]) -> st.SearchStrategy[Any]:
    low, high = meta.get("low"), meta.get("high")
    if tp is bool:
        return st.booleans()
    if tp is int:
        lo = codec.INT_MIN if low is None else max(int(low), codec.INT_MIN)
        hi = codec.INT_MAX if high is None else min(int(high), codec.INT_MAX)
        return st.integers(lo, hi)
    if tp is float:
        floats = st.floats(low, high, allow_nan=False, allow_infinity=False)
        lo = codec.INT_MIN if low is None else int(low)
        hi = codec.INT_MAX if high is None else int(high)
        return floats | st.integers(lo, hi)  # JSON has no float/int distinction
    if tp is str:
        if meta.get("token"):
            return st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True)
        return st.text(max_size=codec.MAX_STR)
    raise TypeError(tp)


def valid(tp: Any, meta: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """JSON values that ``codec.decode`` must accept for type ``tp``."""
    meta = meta or {}
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return st.one_of([st.none() if a is type(None) else valid(a, meta) for a in args])
    if origin is Literal:
        return st.sampled_from(args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(valid(args[0], meta), max_size=8)
        return st.tuples(*(valid(a, meta) for a in args)).map(list)
    if origin is dict and len(args) == 2 and args[1] in (int, float):  # e.g. class counts
        number = valid(args[1], {})
        return st.dictionaries(st.text(max_size=64), number, max_size=8)
    if origin is dict:
        flat = st.one_of(
            st.none(),
            st.booleans(),
            st.integers(codec.INT_MIN, 2**63),
            st.text(max_size=20),
            st.floats(allow_nan=False, allow_infinity=False),
        )
        return st.dictionaries(st.text(max_size=64), flat, max_size=8)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        required: dict[str, st.SearchStrategy[Any]] = {}
        optional: dict[str, st.SearchStrategy[Any]] = {}
        for f in dataclasses.fields(tp):
            strategy = valid(hints[f.name], dict(f.metadata))
            has_default = f.default is not dataclasses.MISSING
            has_default |= f.default_factory is not dataclasses.MISSING
            (optional if has_default else required)[f.name] = strategy
        return st.fixed_dictionaries(required, optional=optional)
    return _scalar(tp, meta)


documents = st.sampled_from(KINDS).flatmap(lambda k: st.tuples(st.just(k), valid(PAYLOADS[k])))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(10**18, 10**30)
    | st.floats()
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
