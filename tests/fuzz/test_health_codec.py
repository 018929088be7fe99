"""Hypothesis on the health payload codec (agent/health/codec.py, via agent.health.schema).

Every payload the schema allows survives ``to_json`` -> ``decode_payload`` unchanged; any bytes
or JSON are either a payload or refused with ``SchemaError`` (never another exception); one
wrong value in a good payload is named by its field path; known hostile bodies (nesting beyond
the parser, integers beyond 64 bits or float range, UTF-16/32, a BOM, oversize) are refused.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from agent.health import codec
from agent.health.schema import PAYLOADS, SchemaError, decode_payload
from tests.fuzz.conftest import fuzz
from tests.fuzz.health_payloads import KINDS, documents, json_values


@fuzz(400)
@given(doc=documents)
def test_every_valid_payload_round_trips(doc: tuple[str, dict[str, Any]]) -> None:
    kind, data = doc
    payload = PAYLOADS[kind].validate(data)
    text = payload.to_json()
    assert decode_payload(kind, text.encode()) == payload
    assert decode_payload(kind, text) == payload
    again = json.loads(text)
    assert PAYLOADS[kind].validate(again) == payload
    event(kind)


@fuzz(300)
@given(kind=st.sampled_from(KINDS), data=st.binary(max_size=300))
def test_arbitrary_bytes_are_refused_with_schema_error(kind: str, data: bytes) -> None:
    try:
        decode_payload(kind, data)
    except SchemaError as exc:
        assert exc.field.split(".")[0] == kind
        event("refused")
    else:
        event("decoded")


@fuzz(300)
@given(kind=st.sampled_from(KINDS), value=json_values)
def test_arbitrary_json_is_a_payload_or_schema_error(kind: str, value: Any) -> None:
    try:
        decode_payload(kind, json.dumps(value).encode())
    except SchemaError:
        event("refused")


MINIMAL: dict[str, dict[str, Any]] = {
    "status": {"state": "ready", "session": 1, "ts": 1.0},
    "birth": {"device_id": "pi-1", "ts": 1.0, "session": 1},
    "health": {
        "seq": 1,
        "ts": 1.0,
        "uptime_s": 1.0,
        "cpu_pct": 1.0,
        "load": [0, 0, 0],
        "rss_mb": 1.0,
        "memory": {"total_mb": 1, "available_mb": 1, "pct": 1},
        "disk": {"free_mb": 1, "pct": 1},
    },
    "event": {"kind": "x", "ts": 1.0},
    "ack": {"seq": 1, "ts": 1.0, "status": "applied"},
}
# name -> (body from a minimal document, the field named, what the error says was expected)
HOSTILE: dict[str, tuple[Any, str, str]] = {
    "deep": (lambda doc: b"[" * 60_000, "", "expected UTF-8 JSON (maximum recursion depth"),
    "huge-int-in-float": (
        lambda doc: json.dumps({**doc, "ts": 10**400}).encode(),
        ".ts",
        "expected a finite number. Received: ts=1000",
    ),
    "int-beyond-64-bits": (
        lambda doc: json.dumps({**doc, "ts": 2**64}).encode(),
        ".ts",
        "expected a finite number. Received: ts=18446744073709551616",
    ),
    "utf-16": (lambda doc: json.dumps(doc).encode("utf-16"), "", "expected UTF-8 JSON ('utf-8'"),
    "utf-32": (lambda doc: json.dumps(doc).encode("utf-32"), "", "expected UTF-8 JSON ('utf-8'"),
    "bom": (
        lambda doc: b"\xef\xbb\xbf" + json.dumps(doc).encode(),
        "",
        "expected UTF-8 JSON (Unexpected UTF-8 BOM",
    ),
    "oversize": (
        lambda doc: json.dumps({**doc, "pad": "x" * codec.MAX_PAYLOAD_BYTES}).encode(),
        "",
        f"expected at most {codec.MAX_PAYLOAD_BYTES} bytes. Received:",
    ),
}


@pytest.mark.parametrize("kind", KINDS)
def test_minimal_payloads_are_valid(kind: str) -> None:
    payload = decode_payload(kind, json.dumps(MINIMAL[kind]).encode())
    assert type(payload) is PAYLOADS[kind]
    assert payload == PAYLOADS[kind].validate(MINIMAL[kind])
    again = json.loads(payload.to_json())  # every field given comes back, defaults added
    assert {k: again[k] for k in MINIMAL[kind]} == MINIMAL[kind]


@pytest.mark.parametrize("hostile", list(HOSTILE))
@pytest.mark.parametrize("kind", KINDS)
def test_known_hostile_payloads_are_refused(kind: str, hostile: str) -> None:
    build, field, expected = HOSTILE[hostile]
    with pytest.raises(SchemaError) as info:
        decode_payload(kind, build(MINIMAL[kind]))
    assert info.value.field == kind + field
    assert str(info.value).startswith(f"{kind}{field}: {expected}")


@pytest.mark.parametrize("kind", KINDS)
def test_an_int_field_beyond_64_bits_is_refused(kind: str) -> None:
    field = {"status": "session", "birth": "session", "health": "seq", "event": "ts", "ack": "seq"}[
        kind
    ]
    with pytest.raises(SchemaError, match=r"at most 64 bits|finite number") as info:
        decode_payload(kind, json.dumps({**MINIMAL[kind], field: 2**64}).encode())
    assert info.value.field == f"{kind}.{field}"


def _paths(value: Any, prefix: str) -> Iterator[tuple[str, list[Any]]]:
    """Every location in a JSON value: its codec-style field name and its key path."""
    yield prefix, []
    if isinstance(value, dict):
        for k, v in value.items():
            for name, keys in _paths(v, f"{prefix}.{k}"):
                yield name, [k, *keys]
    elif isinstance(value, list):
        for i, v in enumerate(value):
            for name, keys in _paths(v, f"{prefix}[{i}]"):
                yield name, [i, *keys]


def _replace(value: Any, keys: list[Any], new: Any) -> Any:
    if not keys:
        return new
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    copy[keys[0]] = _replace(value[keys[0]], keys[1:], new)
    return copy


@fuzz(400)
@given(doc=documents, pick=st.randoms(use_true_random=False), new=json_values)
def test_one_wrong_value_is_named_by_its_field(
    doc: tuple[str, dict[str, Any]], pick: random.Random, new: Any
) -> None:
    kind, data = doc
    locations = list(_paths(data, kind))[1:]
    if not locations:
        return
    name, keys = pick.choice(locations)
    mutated = _replace(data, keys, new)
    try:
        decode_payload(kind, json.dumps(mutated).encode())
    except SchemaError as exc:
        # the first problem is at the changed location or inside the new value there
        assert exc.field == name or exc.field.startswith((f"{name}.", f"{name}[")), (
            exc.field,
            name,
        )
        event("refused at the change")
    else:
        event("still valid")
