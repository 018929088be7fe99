"""The HTTP contract (docs/architecture.md, HTTP): uvicorn on a loopback port, httpx as client.

Also: model swaps while a client keeps predicting (refused candidates leave the old version
answering; a good one is answered from the next request on), the token and the body limit on
the wire, and a busy port.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.errors import ConfigError, ModelSlotError
from agent.healthz import AgentState
from agent.metrics import AgentMetrics
from agent.serve import HttpServer, HttpSettings, create_app
from agent.slots import ModelSlots
from agent.store import MemoryStore
from agent.types import Sample
from tests.agent.serve.bundles import Bundles, copy_bundle, edit_manifest

REPO = Path(__file__).resolve().parents[3]
ROOM = ("temp_c", "humidity_pct", "pressure_hpa", "light_lux", "co2_ppm")
X = [21.3, 45.0, 1013.2, 120.0, 450.0]
TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Agent:
    def __init__(self, root: Path, settings: HttpSettings) -> None:
        self.events: list[str] = []
        self.metrics = AgentMetrics()
        self.slots = ModelSlots(root, on_event=self._event)
        self.slots.load()
        self.store = MemoryStore()
        app = create_app(
            slots=self.slots,
            store=self.store,
            metrics=self.metrics,
            settings=settings,
            agent_state=lambda: AgentState("pi-contract", sensors={"room": "ok"}),
        )
        self.server = HttpServer(app, settings)

    def _event(self, name: str, payload: dict[str, object]) -> None:
        self.events.append(name)
        self.metrics.record_model_event(name, payload)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    a = Agent(tmp_path / "models", HttpSettings(port=0, token=TOKEN, max_body_bytes=4096))
    a.server.start(timeout=10)
    try:
        yield a
    finally:
        a.server.stop()


@pytest.fixture
def client(agent: Agent) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=agent.server.url, headers=AUTH, timeout=10) as c:
        yield c


def version(client: httpx.Client) -> str | None:
    health = client.get("/healthz").json()
    return None if health["model"] is None else health["model"]["version"]


def test_the_contract_end_to_end(agent: Agent, client: httpx.Client, bundles: Bundles) -> None:
    assert agent.server.url.startswith("http://127.0.0.1:") and agent.server.port > 0
    # before the first model: alive, not ready, 503 elsewhere
    health = client.get("/healthz").json()
    assert (health["status"], health["ready"], health["model_loaded"]) == ("ok", False, False)
    assert client.get("/api/info").status_code == 503
    assert client.post("/api/predict", json={"features": X}).status_code == 503
    assert client.get("/api/predict/latest").status_code == 503

    agent.slots.install(bundles("mlp", "classify", "float32", "1"))
    health = client.get("/healthz").json()
    assert health["ready"] and health["model"]["version"] == "1"
    assert health["device_id"] == "pi-contract"  # the running agent's part
    info = client.get("/api/info").json()
    assert info["input"]["feature_names"] == list(ROOM) and info["runtime"]["name"]

    one = client.post("/api/predict", json={"features": X})
    assert one.status_code == 200 and one.headers["content-type"] == "application/json"
    body = one.json()
    assert body["model_version"] == "1" and body["result"]["label"] in info["output"]["labels"]
    assert body["timing"]["inference_ms"] >= 0 and body["timing"]["preprocess_ms"] >= 0
    batch = client.post("/api/predict", json={"instances": [X, X]}).json()["result"]
    assert batch == [body["result"]] * 2
    named = client.post("/api/predict", json={"readings": dict(zip(ROOM, X, strict=True))})
    assert named.json()["result"] == body["result"]

    assert client.get("/api/predict/latest").status_code == 409
    agent.store.append(Sample(ts=1.0, values=dict(zip(ROOM, X, strict=True))))
    assert client.get("/api/predict/latest").json()["result"] == body["result"]

    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert 'orchard_predictions_total{endpoint="predict",outcome="ok"} 3.0' in metrics.text
    assert 'orchard_model_events_total{event="model_swapped"} 1.0' in metrics.text
    assert "process_resident_memory_bytes" in metrics.text

    schema = client.get("/openapi.json").json()
    assert schema["components"]["schemas"]["PredictRequest"]
    assert client.get("/docs").status_code == 200


def test_bad_input_on_the_wire_leaves_the_model_alone(
    agent: Agent, client: httpx.Client, bundles: Bundles
) -> None:
    agent.slots.install(bundles())
    before = client.post("/api/predict", json={"features": X}).json()["result"]
    bad = [
        b'{"features": [21.3, NaN, 1013.2, 120.0, 450.0]}',
        b'{"features": [21.3]}',
        b'{"features": [21.3, "x", 1013.2, 120.0, 450.0]}',
        b'{"feature": [21.3, 45.0, 1013.2, 120.0, 450.0]}',
        b'{"features": [1], "instances": [[1]]}',
        b"\x00\x01garbage",
        b"[" * 3000,
    ]
    for payload in bad:
        r = client.post("/api/predict", content=payload)
        assert 400 <= r.status_code < 500, payload
        assert r.json()["detail"] and "field" in r.json()
    big = json.dumps({"instances": [X] * 200}).encode()
    r = client.post("/api/predict", content=big)
    assert r.status_code == 413
    r = client.post("/api/predict", content=iter([big[:3000], big[3000:]]))  # chunked
    assert r.status_code == 413
    assert client.post("/api/predict", json={"features": X}).json()["result"] == before
    assert version(client) == "1"


def test_token_on_the_wire(agent: Agent, bundles: Bundles) -> None:
    agent.slots.install(bundles())
    with httpx.Client(base_url=agent.server.url) as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        r = anonymous.post("/api/predict", json={"features": X})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        r = anonymous.get("/metrics", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401


def test_swaps_while_a_client_keeps_predicting(
    agent: Agent, client: httpx.Client, bundles: Bundles, tmp_path: Path
) -> None:
    agent.slots.install(bundles("mlp", "classify", "float32", "1"))
    seen: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=agent.server.url, headers=AUTH, timeout=10) as c:
            while not stop.is_set():
                r = c.post("/api/predict", json={"features": X})
                seen.append((r.status_code, r.json().get("model_version")))

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        truncated = copy_bundle(bundles("mlp", "classify", "int8", "2"), tmp_path / "truncated")
        model = truncated / "model.tflite"
        model.write_bytes(model.read_bytes()[:100])
        golden = copy_bundle(bundles("mlp", "classify", "int8", "2"), tmp_path / "golden")
        edit_manifest(golden, golden__outputs=[[9.0, 9.0, 9.0]] * 4)
        for candidate in (truncated, golden, tmp_path / "missing"):
            with pytest.raises(ModelSlotError):
                agent.slots.install(candidate)
            assert version(client) == "1"
            assert client.post("/api/predict", json={"features": X}).json()["model_version"] == "1"

        agent.slots.install(bundles("mlp", "classify", "int8", "2"))
        assert version(client) == "2"
        r = client.post("/api/predict", json={"features": X}).json()
        assert r["model_version"] == "2"
        assert client.get("/api/info").json()["quantization"] == "int8"
    finally:
        stop.set()
        thread.join(timeout=30)
    assert seen and all(status == 200 for status, _ in seen)
    versions = [str(v) for _, v in seen]
    assert set(versions) <= {"1", "2"}
    assert versions == sorted(versions)  # never back to the old model after the swap
    assert agent.events.count("model_rejected") == 3
    text = client.get("/metrics").text
    assert 'orchard_model_events_total{event="model_rejected"} 3.0' in text
    assert 'orchard_model_info{name="mlp-classify",quantization="int8"' in text


def test_a_busy_port_is_a_config_error(agent: Agent, tmp_path: Path) -> None:
    other = Agent(tmp_path / "other", HttpSettings(port=agent.server.port))
    with pytest.raises(ConfigError) as info:
        other.server.start(timeout=5)
    assert info.value.key == "http.port"


def test_serving_imports_no_tensorflow() -> None:
    code = (
        "import sys, agent.serve, agent.slots, agent.metrics; "
        "bad = [m for m in ('tensorflow', 'keras', 'websockets', 'fastapi', 'pydantic') "
        "if m in sys.modules]; "
        "assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]


def test_serving_over_http_imports_no_fastapi_pydantic_or_uvicorn_extras(
    tmp_path: Path, bundles: Bundles
) -> None:
    """The agent's HTTP stack over a real socket: Starlette and uvicorn with the loop, the
    parser and no WebSockets chosen explicitly; whatever else is installed (flwr brings
    uvicorn[standard] and FastAPI) stays unimported."""
    script = f"""
import http.client, json, sys
from pathlib import Path
from agent.metrics import AgentMetrics
from agent.serve import HttpServer, HttpSettings, create_app, server
from agent.slots import ModelSlots
from agent.store import MemoryStore
slots = ModelSlots(Path({str(tmp_path / "models")!r}))
slots.load()
slots.install(Path({str(bundles())!r}))
settings = HttpSettings(port=0)
http_server = HttpServer(create_app(slots=slots, store=MemoryStore(), metrics=AgentMetrics(),
                                    settings=settings), settings)
http_server.start(timeout=10)
conn = http.client.HTTPConnection("127.0.0.1", http_server.port, timeout=10)
statuses = []
for method, path, body in (("GET", "/healthz", None), ("GET", "/metrics", None),
                           ("POST", "/api/predict", json.dumps({{"features": {X!r}}})),
                           ("GET", "/openapi.json", None), ("HEAD", "/healthz", None)):
    conn.request(method, path, body, {{"Content-Type": "application/json"}})
    response = conn.getresponse()
    response.read()
    statuses.append(response.status)
conn.close()
http_server.stop()
unused = {{"h11": "httptools", "httptools": "h11"}}[server.HTTP]
unwanted = ("fastapi", "pydantic", "pydantic_core", "watchfiles", "websockets", "uvloop", unused)
print(*statuses, [m for m in unwanted if m in sys.modules], server.HTTP in sys.modules)
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["200", "200", "200", "200", "405", "[]", "True"]


def test_the_listener_says_tcp_so_asyncio_turns_nagle_off(agent: Agent) -> None:
    """asyncio sets TCP_NODELAY on accepted sockets only when the listener's proto is TCP;
    with proto 0, Nagle plus delayed ACKs hold every response ~40 ms."""
    import socket

    sock = agent.server._sock
    assert sock is not None and sock.proto == socket.IPPROTO_TCP
