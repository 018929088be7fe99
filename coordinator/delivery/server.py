"""The artifact server: ``GET /models/{version}/{name}`` streams what the catalog serves.

``GET /signer.pem`` is the signer certificate the coordinator signs with (the one loaded at
start), for boards that check a signed remote configuration command (its ``signer_url``;
agent/remote/command.py); a 404 naming ``[delivery] signing_cert`` when nothing is signed.

``name`` is ``manifest.json``, ``model.tflite`` or ``signer.pem``; every file is opened through
:meth:`Catalog.path`, so a version the catalog does not know, any other name and any path with
more segments (``..``, encoded slashes) get a 404 whose JSON ``error`` names what is missing.
Files are streamed with their ``Content-Length`` (``HEAD`` and byte ranges work, so a board can
resume). Run it like the dashboard, on uvicorn in a background thread, with ``[delivery]``'s
TLS::

    catalog = Catalog.from_settings(cfg.delivery, cfg.runs_dir)
    server = DashboardServer(
        create_app(catalog), cfg.delivery.host, cfg.delivery.port, name="delivery",
        tls_cert=cfg.delivery.tls_cert, tls_key=cfg.delivery.tls_key, tls_ca=cfg.delivery.tls_ca,
    )
    server.start()

With ``tls_ca`` (mutual TLS) the TLS handshake already refused every client without a
certificate from the fleet CA before a request reaches this app (docs/tls.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from coordinator.delivery.catalog import SIGNER_FILE, Catalog
from coordinator.delivery.errors import ArtifactError, DeliveryError, NotServed
from models.manifest import MANIFEST_FILE, MODEL_FILE

logger = logging.getLogger(__name__)

MEDIA_TYPES: Final = {
    MANIFEST_FILE: "application/json",
    MODEL_FILE: "application/octet-stream",
    SIGNER_FILE: "application/x-pem-file",
}


def create_app(catalog: Catalog) -> Starlette:
    """The ASGI app serving ``catalog`` and its signer (every other path is a JSON 404)."""

    def serve(request: Request, find: Callable[[str, str], Path], media_type: str) -> Response:
        # A plain function's work: Starlette runs the routes below in its thread pool (the
        # catalog hashes files).
        version = request.path_params["version"]
        name = request.path_params["name"]
        try:
            path = find(version, name)
        except (NotServed, ArtifactError) as exc:
            logger.info("delivery: refused %s: %s", request.url.path, exc)
            return JSONResponse({"error": str(exc)}, status_code=404)
        except DeliveryError as exc:
            logger.warning("delivery: cannot serve %s: %s", request.url.path, exc)
            return JSONResponse({"error": str(exc)}, status_code=503)
        return FileResponse(path, media_type=media_type)

    def model_file(request: Request) -> Response:
        return serve(request, catalog.path, MEDIA_TYPES.get(request.path_params["name"], ""))

    def software_file(request: Request) -> Response:
        name = request.path_params["name"]
        kind = "application/json" if name == MANIFEST_FILE else "application/octet-stream"
        return serve(request, catalog.software_path, kind)

    async def signer_pem(request: Request) -> Response:
        signer = catalog.signer
        if signer is None:
            return JSONResponse(
                {
                    "error": "signer.pem: expected a signing coordinator. Received: no "
                    "[delivery] signing_cert (set signing_cert and signing_key in "
                    "coordinator.toml; orchard-provision ca signer-cert NAME issues them)"
                },
                status_code=404,
            )
        return Response(signer.cert_pem, media_type=MEDIA_TYPES[SIGNER_FILE])

    async def refuse(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException) and exc.status_code == 405:
            expected, received = "GET or HEAD", f"method={request.method}"
        else:
            expected = (
                "/models/<version>/<manifest.json|model.tflite|signer.pem>, "
                "/software/<version>/<manifest.json|wheel> or /signer.pem"
            )
            received = f"path={request.url.path[:200]!r}"
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        return JSONResponse({"error": f"expected {expected}. Received: {received}"}, status)

    return Starlette(
        routes=[
            Route("/models/{version}/{name}", model_file, methods=["GET", "HEAD"]),
            Route("/software/{version}/{name}", software_file, methods=["GET", "HEAD"]),
            Route("/signer.pem", signer_pem, methods=["GET", "HEAD"]),
        ],
        exception_handlers={404: refuse, 405: refuse},
    )
