"""``/openapi.json`` at run time: the shipped generic document, fitted to the serving model.

The generic document (no model loaded) is generated from the pydantic models of ``schemas.py``
by ``docgen.py`` and shipped as ``agent/serve/openapi.json``; a test fails when the two differ.
This module only reads that JSON (no pydantic in the always-on process) and, per serving input
spec, narrows it:

- while a model serves, the three request bodies describe its input exactly (nested arrays of
  the sample's shape, numbers within float32 range, the feature names for ``readings``), so a
  client or a fuzzer can tell a body the model takes from one it refuses;
- while a model serves, ``label`` in the label bodies is the schema of a label it takes
  (``agent.labels.requests.label_schema``: its classes, or numbers within its outputs' range),
  and a batch holds at most as many labels as ``[labels]`` lets through at once;
- when ``http.token`` is set, every operation but ``/healthz`` declares the bearer scheme, so a
  generated client (or schemathesis' ``ignored_auth`` check) knows which calls need the token.

The document is built once per serving input spec and label fit, cached on the app, and rebuilt
when a model with another input or other labels replaces the serving one. Regenerate the
shipped file after changing ``schemas.py`` or a route: ``python -m agent.serve.docgen --write``.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from agent.serve.guard import OPEN_PATHS
from models.spec import InputSpec

DOCUMENT = Path(__file__).with_name("openapi.json")
UNVERSIONED = "0+unknown"  # info.version in the shipped file; the installed one replaces it
REQUEST_REF = {"$ref": "#/components/schemas/PredictRequest"}
BEARER = "bearer"
# The smallest magnitude that float32 rounds to infinity: inputs.py refuses it and beyond.
FLOAT32_OVERFLOW = 2.0**128 * (1 - 2.0**-25)
LabelFit = dict[str, Any]  # {"label": <JSON schema>, "max_batch": int}; see label_fit


def openapi(
    app: Starlette,
    *,
    bearer: bool = False,
    spec: InputSpec | None = None,
    labels: LabelFit | None = None,
) -> dict[str, Any]:
    """The app's OpenAPI document, built once per serving input ``spec`` and label fit, cached.

    ``bearer``: the app checks a bearer token (``http.token``) on every path but ``/healthz``.
    ``spec``: the serving model's input, or ``None`` (no model: generic request bodies).
    ``labels``: the serving model's label schema and the largest batch, or ``None``.
    """
    key = (spec, None if labels is None else json.dumps(labels, sort_keys=True))
    cached: tuple[Any, dict[str, Any]] | None = getattr(app.state, "orchard_openapi", None)
    if cached is None or cached[0] != key:
        cached = (key, build(bearer=bearer, spec=spec, labels=labels))
        app.state.orchard_openapi = cached
    return cached[1]


def build(
    *, bearer: bool, spec: InputSpec | None, labels: LabelFit | None = None
) -> dict[str, Any]:
    """A fresh document: the shipped one, this package's version, fitted to ``spec``."""
    schema: dict[str, Any] = json.loads(DOCUMENT.read_bytes())
    schema["info"]["version"] = version()
    if spec is not None:
        _fit_requests(schema["components"]["schemas"], spec)
    if labels is not None:
        _fit_labels(schema["components"]["schemas"], labels)
    if bearer:
        _declare_bearer(schema)
    return schema


def label_fit(label: Mapping[str, Any], max_batch: int) -> LabelFit:
    """What ``labels=`` takes: a label's schema and the most labels a batch may hold."""
    return {"label": dict(label), "max_batch": max_batch}


def _fit_labels(components: dict[str, Any], labels: LabelFit) -> None:
    for name in ("PredictionLabel", "ReadingLabel"):
        prop = components[name]["properties"]
        prop["label"] = {**labels["label"], "description": prop["label"]["description"]}
        components[name].pop("examples", None)  # the generic example may name another class
    components["LabelBatch"]["properties"]["labels"]["maxItems"] = labels["max_batch"]


def version() -> str:
    try:
        return importlib.metadata.version("orchard-fl")
    except importlib.metadata.PackageNotFoundError:
        return UNVERSIONED


def _fit_requests(components: dict[str, Any], spec: InputSpec) -> None:
    """Narrow the request bodies to what the serving model takes (see inputs.py)."""
    sample = _sample(spec.shape)
    features = components["FeaturesRequest"]
    features.pop("examples", None)  # the generic example may have the wrong length
    features["properties"]["features"] = {
        **sample,
        "description": f"One sample of shape {list(spec.shape)}.",
    }
    instances = components["InstancesRequest"]["properties"]["instances"]
    instances["items"] = sample
    readings = components["ReadingsRequest"]
    readings.pop("examples", None)
    if len(spec.shape) == 1 and spec.window is None and spec.feature_names:
        readings["properties"]["readings"] = {
            "type": "object",
            "properties": {name: _number() for name in spec.feature_names},
            "required": list(spec.feature_names),
            "additionalProperties": False,
            "description": "Exactly the model's features, by name.",
        }
    else:  # named readings fit only single-row models
        del components["ReadingsRequest"]
        ref = {"$ref": "#/components/schemas/ReadingsRequest"}
        components["PredictRequest"]["anyOf"].remove(ref)


def _number() -> dict[str, Any]:
    return {
        "type": "number",
        "exclusiveMinimum": -FLOAT32_OVERFLOW,
        "exclusiveMaximum": FLOAT32_OVERFLOW,
    }


def _sample(shape: tuple[int, ...]) -> dict[str, Any]:
    node = _number()
    for size in reversed(shape):
        node = {"type": "array", "items": node, "minItems": size, "maxItems": size}
    return node


def _declare_bearer(schema: dict[str, Any]) -> None:
    schema["components"]["securitySchemes"] = {
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "description": "The token set as http.token in agent.toml.",
        }
    }
    for path, operations in schema.get("paths", {}).items():
        if path not in OPEN_PATHS:
            for operation in operations.values():
                operation["security"] = [{BEARER: []}]
