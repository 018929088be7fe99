"""``/openapi.json``, built on its first request from the live routes plus their documentation.

The live app declares its routes without pydantic response models: the handlers build their
JSON by hand (see ``predict.py`` and ``responses.py``), so the models would only cost memory
(~1.2 MB RSS of validators and serializers in an always-on 75 MB process). The models in
``schemas.py`` document the contract instead: on the first ``GET /openapi.json`` each live route
is re-declared, with the same endpoint, path and tags plus the models named in
:func:`documentation`, and FastAPI's generator turns those into the schema, which is cached.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import TypeAdapter

from agent.serve import schemas

REQUEST_REF = {"$ref": "#/components/schemas/PredictRequest"}


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


def openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document, generated once (``app.openapi = lambda: openapi(app)``)."""
    if app.openapi_schema is None:
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
        app.openapi_schema = schema
    return app.openapi_schema
