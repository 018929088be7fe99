"""Generate the generic ``/openapi.json`` (no model loaded) from ``schemas.py`` and the routes.

Build time only: this module imports pydantic, the always-on agent never imports it (``docs.py``
serves the shipped result). The paths come from the app's own routes (path, method, endpoint
name and docstring), the bodies from the pydantic models, in the shape FastAPI used to give
them (same operation ids, summaries and component names), so clients see no change::

    python -m agent.serve.docgen --write   # regenerate agent/serve/openapi.json
    python -m agent.serve.docgen --check   # exit 1 if the shipped file is stale
    python -m agent.serve.docgen           # print the document

A test fails when the shipped file differs from a fresh generation.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema
from starlette.routing import Route

from agent.metrics import AgentMetrics
from agent.serve import schemas
from agent.serve.app import create_app
from agent.serve.docs import DOCUMENT, REQUEST_REF, UNVERSIONED
from agent.serve.settings import HttpSettings
from agent.slots import ModelSlots

TITLE = "Orchard agent"
DESCRIPTION = "Local predictions from the board's serving model (LiteRT)."
REF_TEMPLATE = "#/components/schemas/{model}"
OK = "Successful Response"
LABEL_REQUEST_REF = {"$ref": "#/components/schemas/LabelRequest"}


@dataclass(frozen=True)
class Operation:
    """How one route is documented beyond its path, method and docstring."""

    tags: tuple[str, ...]
    ok: type[BaseModel] | None = None  # the JSON body of a 200; None: not JSON
    ok_description: str = OK
    errors: dict[int, str] = field(default_factory=dict)  # status -> description (ErrorResponse)
    request: dict[str, Any] | None = None  # a JSON body's schema
    headers: dict[int, dict[str, Any]] = field(default_factory=dict)  # status -> headers


GUARDED = {401: "Missing or wrong bearer token.", 413: "Body larger than http.max_body_bytes."}

# Keyed by the route's name (its endpoint function's name in app.py).
OPERATIONS: dict[str, Operation] = {
    "healthz": Operation(("health",), ok=schemas.HealthResponse),
    "info": Operation(
        ("model",), ok=schemas.InfoResponse, errors={**GUARDED, 503: "No model loaded."}
    ),
    "predict": Operation(
        ("predict",),
        ok=schemas.PredictResponse,
        ok_description="Prediction.",
        errors={
            **GUARDED,
            400: "Body is not JSON.",
            422: "Input the model cannot take.",
            503: "No model loaded.",
        },
        request=REQUEST_REF,
    ),
    "predict_latest": Operation(
        ("predict",),
        ok=schemas.PredictResponse,
        ok_description="Prediction.",
        errors={**GUARDED, 409: "Not enough data stored yet.", 503: "No model or no store."},
    ),
    "add_labels": Operation(
        ("labels",),
        ok=schemas.LabelsResponse,
        ok_description="Labels stored.",
        errors={
            **GUARDED,
            400: "Body is not JSON.",
            404: "An unknown prediction id, or no stored reading close to the timestamp.",
            422: "A label the serving model does not take, or a malformed body.",
            429: "Too many labels: retry after Retry-After seconds.",
            503: "No model loaded, or the store failed.",
        },
        request=LABEL_REQUEST_REF,
        headers={
            429: {
                "Retry-After": {
                    "description": "Seconds until the labels would be accepted.",
                    "schema": {"type": "integer", "minimum": 1},
                }
            }
        },
    ),
    "prometheus": Operation(("health",), errors=GUARDED),  # text/plain, undeclared as before
}
RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    schemas.ErrorResponse,
    schemas.HealthResponse,
    schemas.InfoResponse,
    schemas.LabelsResponse,
    schemas.PredictResponse,
)


def generate() -> dict[str, Any]:
    """The generic document, as ``docs.py`` loads it before fitting it to a model."""
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "description": DESCRIPTION, "version": UNVERSIONED},
        "paths": _paths(_routes()),
        "components": {"schemas": _components()},
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _routes() -> list[Route]:
    """The documented routes of a real app (built without a model, store or disk)."""
    app = create_app(
        slots=ModelSlots(Path("/nonexistent/orchard-docgen")),
        store=None,
        metrics=AgentMetrics(process=False),
        settings=HttpSettings(),
    )
    return [r for r in app.routes if isinstance(r, Route) and r.include_in_schema]


def _paths(routes: Sequence[Route]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for route in routes:
        if route.name not in OPERATIONS:
            raise ValueError(
                f"route {route.path} ({route.name}): expected an entry in docgen.OPERATIONS. "
                f"Received: none (documented: {', '.join(OPERATIONS)})"
            )
        for method in sorted(route.methods or ()):
            paths.setdefault(route.path, {})[method.lower()] = _operation(route, method)
    return paths


def _operation(route: Route, method: str) -> dict[str, Any]:
    doc = OPERATIONS[route.name]
    operation: dict[str, Any] = {
        "tags": list(doc.tags),
        "summary": route.name.replace("_", " ").title(),
        "description": inspect.cleandoc(route.endpoint.__doc__ or ""),
        "operationId": re.sub(r"\W", "_", f"{route.name}{route.path}") + f"_{method.lower()}",
    }
    if doc.request is not None:
        operation["requestBody"] = {
            "content": {"application/json": {"schema": doc.request}},
            "required": True,
        }
    ok: dict[str, Any] = {"description": doc.ok_description}
    if doc.ok is not None:
        ok["content"] = _json(doc.ok.__name__)
    responses = {"200": ok}
    for status, description in doc.errors.items():
        responses[str(status)] = {
            "description": description,
            "content": _json(schemas.ErrorResponse.__name__),
        }
        if status in doc.headers:
            responses[str(status)]["headers"] = doc.headers[status]
    operation["responses"] = responses
    return operation


def _json(component: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model=component)}}}


def _components() -> dict[str, Any]:
    """Responses as serialised (FastAPI's output mode), the request union as validated."""
    mode: Literal["serialization"] = "serialization"
    _, responses = models_json_schema(
        [(model, mode) for model in RESPONSE_MODELS], ref_template=REF_TEMPLATE
    )
    components: dict[str, Any] = dict(sorted(responses.get("$defs", {}).items()))
    unions: tuple[tuple[str, Any], ...] = (
        ("PredictRequest", schemas.PredictRequest),
        ("LabelRequest", schemas.LabelRequest),
    )
    for name, union in unions:
        request = TypeAdapter(union).json_schema(ref_template=REF_TEMPLATE)
        components.update(request.pop("$defs", {}))
        components[name] = request
    return components


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.serve.docgen", description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help=f"write {DOCUMENT}")
    group.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    text = render(generate())
    if args.write:
        DOCUMENT.write_text(text, encoding="utf-8")
        print(f"wrote {DOCUMENT}")
    elif args.check:
        shipped = DOCUMENT.read_text(encoding="utf-8") if DOCUMENT.exists() else ""
        if shipped != text:
            print(f"{DOCUMENT} is stale: run python -m agent.serve.docgen --write")
            return 1
        print(f"{DOCUMENT} is up to date")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
