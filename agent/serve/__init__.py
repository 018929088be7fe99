"""The local prediction endpoint (docs/architecture.md, HTTP).

slots = ModelSlots(Path("/var/lib/orchard/models"))
slots.load()
app = create_app(slots=slots, store=store, metrics=AgentMetrics(), settings=settings)
server = HttpServer(app, settings)
server.start()          # uvicorn in a thread
...
server.stop()

app.py        routes (plain Starlette: no FastAPI, no pydantic in the agent)
predict.py    POST /api/predict and GET /api/predict/latest
inputs.py     request bodies to float32 batches, errors naming the field
results.py    model outputs to results by task
guard.py      bearer token and body limit (pure ASGI middleware)
lane.py       the POST /api/predict fast lane (pure ASGI middleware)
docs.py       /openapi.json: the shipped openapi.json fitted to the serving model (json only)
docgen.py     build time: openapi.json from schemas.py (pydantic) and the routes
settings.py   the [http] table
server.py     uvicorn (asyncio, httptools, no websockets) in a background thread
"""

from __future__ import annotations

from agent.serve.app import create_app
from agent.serve.server import HttpServer
from agent.serve.settings import HttpSettings

__all__ = ["HttpServer", "HttpSettings", "create_app"]
