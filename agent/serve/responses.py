"""JSON responses without pydantic on the way out: ``{"detail": ..., "field": ...}`` for errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response
from starlette.types import Send

JSON = "application/json"


def dumps(payload: Any) -> bytes:
    """Compact JSON; raises ``ValueError`` on NaN or infinity (not valid JSON)."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(dumps(payload), status_code=status, media_type=JSON, headers=headers)


def error_response(
    status: int, detail: str, field: str | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    return json_response({"detail": detail, "field": field}, status, headers)


async def send_error(
    send: Send,
    status: int,
    detail: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """The same error body, sent straight from ASGI middleware."""
    body = dumps({"detail": detail, "field": field})
    raw = [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
