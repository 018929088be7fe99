"""``/openapi.json``, built on its first request from the live routes plus their documentation.

The live app declares its routes without pydantic response models: the handlers build their
JSON by hand (see ``predict.py`` and ``responses.py``), so the models would only cost memory
(~1.2 MB RSS of validators and serializers in an always-on 75 MB process). The models in
``schemas.py`` document the contract instead: on the first ``GET /openapi.json`` each live route
is re-declared, with the same endpoint, path and tags plus the models named in
:func:`documentation`, and FastAPI's generator turns those into the schema, which is cached.
When ``http.token`` is set, every operation but ``/healthz`` declares the bearer scheme, so a
generated client (or schemathesis' ``ignored_auth`` check) knows which calls need the token.

While a model serves, the three request bodies describe its input exactly (nested arrays of
the sample's shape, numbers within float32 range, the feature names for ``readings``), so a
client or a fuzzer can tell a body the model takes from one it refuses. The document is
rebuilt when a model with another input replaces the serving one.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import TypeAdapter

from agent.serve import schemas
from agent.serve.guard import OPEN_PATHS
from models.spec import InputSpec

REQUEST_REF = {"$ref": "#/components/schemas/PredictRequest"}
BEARER = "bearer"
# The smallest magnitude that float32 rounds to infinity: inputs.py refuses it and beyond.
FLOAT32_OVERFLOW = 2.0**128 * (1 - 2.0**-25)


def _error(description: str) -> dict[str, Any]:
    return {"model": schemas.ErrorResponse, "description": description}


def documentation() -> dict[str, dict[str, Any]]:
    """``APIRoute`` keyword arguments per route name (the endpoint function's name)."""
    guarded = {
        401: _error("Missing or wrong bearer token."),
        413: _error("Body larger than http.max_body_bytes."),
    }
    prediction = {"model": schemas.PredictResponse, "description": "Prediction."}
    return {
        "healthz": {"response_model": schemas.HealthResponse},
        "info": {
            "response_model": schemas.InfoResponse,
            "responses": {**guarded, 503: _error("No model loaded.")},
        },
        "predict": {
            "responses": {
                **guarded,
                200: prediction,
                400: _error("Body is not JSON."),
                422: _error("Input the model cannot take."),
                503: _error("No model loaded."),
            },
            "openapi_extra": {
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": REQUEST_REF}},
                }
            },
        },
        "predict_latest": {
            "responses": {
                **guarded,
                200: prediction,
                409: _error("Not enough data stored yet."),
                503: _error("No model or no store."),
            }
        },
        "prometheus": {"responses": guarded},
    }


def openapi(app: FastAPI, *, bearer: bool = False, spec: InputSpec | None = None) -> dict[str, Any]:
    """The app's OpenAPI document, built once per serving input ``spec`` and cached.

    ``bearer``: the app checks a bearer token (``http.token``) on every path but ``/healthz``.
    ``spec``: the serving model's input, or ``None`` (no model: generic request bodies).
    """
    cached: tuple[InputSpec | None, dict[str, Any]] | None = getattr(
        app.state, "orchard_openapi", None
    )
    if cached is None or cached[0] != spec:
        cached = (spec, _build(app, bearer=bearer, spec=spec))
        app.state.orchard_openapi = cached
        app.openapi_schema = cached[1]
    return cached[1]


def _build(app: FastAPI, *, bearer: bool, spec: InputSpec | None) -> dict[str, Any]:
    docs = documentation()
    routes = [
        APIRoute(
            route.path,
            route.endpoint,
            methods=sorted(route.methods or ()),
            tags=route.tags,
            response_class=route.response_class,
            name=route.name,
            **docs.get(route.name, {}),
        )
        for route in app.routes
        if isinstance(route, APIRoute) and route.include_in_schema
    ]
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=routes
    )
    # The predict body is parsed by hand (inputs.py), so FastAPI cannot see its model.
    request = TypeAdapter(schemas.PredictRequest).json_schema(
        ref_template="#/components/schemas/{model}"
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(request.pop("$defs", {}))
    components["PredictRequest"] = request
    if spec is not None:
        _fit_requests(components, spec)
    if bearer:
        _declare_bearer(schema)
    return schema


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
