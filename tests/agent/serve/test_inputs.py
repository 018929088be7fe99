"""Request bodies to batches: every bad input names its field and what was expected."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agent.serve.inputs import RequestInputError, parse_body
from models.errors import PredictInputError
from models.manifest import Manifest, TensorInfo
from models.spec import InputSpec, Task

NAMES = ("a", "b", "c")


def manifest(spec: InputSpec) -> Manifest:
    return Manifest(
        name="m",
        version="1",
        task=Task.CLASSIFY,
        family="mlp",
        input=spec,
        quantization="float32",
        sha256="0" * 64,
        size_bytes=1,
        input_tensor=TensorInfo((-1, *spec.shape), "float32"),
        output_tensor=TensorInfo((-1, 2), "float32"),
        labels=("x", "y"),
    )


TABULAR = manifest(InputSpec.tabular(NAMES))
WINDOWED = manifest(InputSpec.windowed(("t", "v"), 4))
IMAGE = manifest(InputSpec.image(8, 8))


def parse(payload: object, m: Manifest = TABULAR) -> tuple[np.ndarray, bool]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    parsed = parse_body(body, m)
    return parsed.batch, parsed.single


def refused(payload: object, m: Manifest = TABULAR) -> RequestInputError:
    with pytest.raises(RequestInputError) as info:
        parse(payload, m)
    return info.value


def test_features_instances_and_readings() -> None:
    batch, single = parse({"features": [1, 2.5, -3]})
    assert single and batch.dtype == np.float32 and batch.tolist() == [[1, 2.5, -3]]
    batch, single = parse({"instances": [[1, 2, 3], [4, 5, 6]]})
    assert not single and batch.shape == (2, 3)
    batch, single = parse({"readings": {"c": 3, "a": 1, "b": 2}})
    assert single and batch.tolist() == [[1, 2, 3]]  # ordered by the manifest
    batch, _ = parse({"features": [[0.5, 1]] * 4}, WINDOWED)
    assert batch.shape == (1, 4, 2)
    batch, _ = parse({"instances": [[[[0.0]] * 8] * 8] * 3}, IMAGE)
    assert batch.shape == (3, 8, 8, 1)


def test_it_is_a_predict_input_error_naming_field_expectation_and_status() -> None:
    err = refused({"features": [1]})
    assert isinstance(err, PredictInputError)  # callers outside serve/ catch the models error
    assert (err.field, err.status) == ("features", 422)
    assert err.detail == "features: expected 3 items (a, b, c) (shape [3]). Received: 1 items"


@pytest.mark.parametrize(
    ("payload", "field", "words", "status"),
    [
        (b"", "body", "exactly one of", 422),
        (b"   ", "body", "exactly one of", 422),
        (b"{not json", "body", "invalid JSON", 400),
        (b"\xff\xfe\x00", "body", "invalid JSON", 400),
        ([1, 2, 3], "body", "JSON object", 422),
        ({}, "body", "an empty object", 422),
        ({"features": [1, 2, 3], "extra": 1}, "extra", "an unknown field", 422),
        ({"features": [1, 2, 3], "instances": [[1, 2, 3]]}, "body", "features and instances", 422),
        ({"features": [1, 2]}, "features", "expected 3 items (a, b, c)", 422),
        ({"features": [1, 2, 3, 4]}, "features", "Received: 4 items", 422),
        ({"features": [1, "2", 3]}, "features[1]", "a string", 422),
        ({"features": [1, True, 3]}, "features[1]", "Received: true", 422),
        ({"features": [False, False, False]}, "features[0]", "Received: false", 422),
        ({"features": [1, None, 3]}, "features[1]", "null", 422),
        ({"features": [1, {"x": 1}, 3]}, "features[1]", "an object", 422),
        ({"features": None}, "features", "expected a list of 3 numbers", 422),
        ({"features": 5}, "features", "expected a list of 3 numbers", 422),
        ({"features": "1,2,3"}, "features", "a string", 422),
        (
            {"features": [[1, 2, 3], [4, 5, 6]]},
            "features",
            "send several samples as instances",
            422,
        ),
        (b'{"features": [1, NaN, 3]}', "features[1]", "finite", 422),
        (b'{"features": [1, 2, Infinity]}', "features[2]", "finite", 422),
        (b'{"features": [-Infinity, 2, 3]}', "features[0]", "finite", 422),
        ({"features": [1e39, 2, 3]}, "features[0]", "float32 range", 422),
        ({"features": [10**400, 2, 3]}, "features", "finite", 422),
        ({"instances": []}, "instances", "non-empty list", 422),
        ({"instances": [1, 2, 3]}, "instances[0]", "expected a list of 3 numbers", 422),
        ({"instances": [[1, 2, 3], [1, 2]]}, "instances[1]", "expected 3 items", 422),
        ({"instances": [[1, 2, 3], [1, "x", 3]]}, "instances[1][1]", "a string", 422),
        (b'{"instances": [[1, 2, 3], [1, 2, NaN]]}', "instances[1][2]", "finite", 422),
        ({"instances": {"a": 1}}, "instances", "non-empty list", 422),
        ({"readings": {"a": 1, "b": 2}}, "readings", "missing c", 422),
        ({"readings": {"a": 1, "b": 2, "c": 3, "d": 4}}, "readings", "unknown d", 422),
        ({"readings": {"a": 1, "b": "2", "c": 3}}, "readings.b", "a string", 422),
        ({"readings": {"a": 1, "b": True, "c": 3}}, "readings.b", "true", 422),
        (b'{"readings": {"a": 1, "b": NaN, "c": 3}}', "readings.b", "finite", 422),
        ({"readings": {"a": 1, "b": 10**400, "c": 3}}, "readings", "finite", 422),
        ({"readings": [1, 2, 3]}, "readings", "an object", 422),
    ],
)
def test_bad_input_names_the_field(payload: object, field: str, words: str, status: int) -> None:
    err = refused(payload)
    assert err.field == field
    assert err.status == status
    assert words in err.detail
    assert err.detail.startswith(f"{field}: ")


def test_windowed_and_image_models() -> None:
    err = refused({"features": [[1, 2]] * 3 + [[1]]}, WINDOWED)
    assert err.field == "features[3]" and "expected 2 items (t, v)" in err.detail
    err = refused({"features": [[1, 2]] * 3}, WINDOWED)
    assert err.field == "features" and "expected 4 items" in err.detail
    err = refused({"readings": {"t": 1, "v": 2}}, WINDOWED)
    assert err.field == "readings" and "/api/predict/latest" in err.detail
    assert "windows of 4 rows" in err.detail
    err = refused({"readings": {"gray": 1}}, IMAGE)
    assert "8x8 grayscale images" in err.detail
    err = refused({"features": [[[0.0]] * 8] * 7}, IMAGE)
    assert err.field == "features" and "expected 8 items" in err.detail


def test_deep_nesting_is_refused_not_crashing() -> None:
    # shallow enough to parse: the shape is wrong; deeper: the JSON parser's limit, a 400
    for depth, field, status, words in (
        (50, "features", 422, "features: expected 3 items (a, b, c) (shape [3]). Received: 1"),
        (5000, "body", 400, "body: expected JSON. Received invalid JSON: maximum recursion"),
        (100_000, "body", 400, "body: expected JSON. Received invalid JSON: maximum recursion"),
    ):
        body = b'{"features": ' + b"[" * depth + b"]" * depth + b"}"
        err = refused(body)
        assert (err.field, err.status) == (field, status), depth
        assert err.detail.startswith(words), err.detail
