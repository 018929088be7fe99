"""The Starlette app through TestClient: every endpoint, every bad input, auth, 503s, the store."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from agent.healthz import AgentState, Healthz
from agent.labels import LabelService, LabelSettings
from agent.metrics import AgentMetrics
from agent.serve import HttpSettings, create_app
from agent.slots import ModelSlots
from agent.store import MemoryStore, Store
from agent.types import Sample
from models.manifest import Manifest
from tests.agent.serve.bundles import Bundles
from tests.fakes import FakeClock

ROOM = ("temp_c", "humidity_pct", "pressure_hpa", "light_lux", "co2_ppm")
X = [21.3, 45.0, 1013.2, 120.0, 450.0]
Factory = Callable[..., TestClient]


@pytest.fixture
def make_client(tmp_path: Path, bundles: Bundles) -> Iterator[Factory]:
    """``make_client(model, store=, settings=, labels=True)``: labels=False builds the app
    without a label service (no prediction log, no ids)."""
    clients: list[TestClient] = []
    services: list[LabelService] = []

    def make(
        model: tuple[str, ...] | None = ("mlp", "classify"),
        *,
        store: Store | None = None,
        settings: HttpSettings | None = None,
        labels: bool = True,
        **kwargs: Any,
    ) -> TestClient:
        slots = ModelSlots(tmp_path / f"models-{len(clients)}")
        slots.load()
        if model is not None:
            slots.install(bundles(*model))
        service = None
        if labels:
            service = LabelService(
                LabelSettings(),
                store,
                model=lambda: None if (p := slots.current()) is None else p.manifest,
            )
            services.append(service)
        app = create_app(
            slots=slots,
            store=store,
            metrics=AgentMetrics(process=False),
            settings=settings or HttpSettings(),
            labels=service,
            **kwargs,
        )
        client = TestClient(app, raise_server_exceptions=False)
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()
    for service in services:
        service.close()


def test_healthz_and_503_before_the_first_model(make_client: Factory) -> None:
    clock = FakeClock(100.0)
    state = AgentState("pi-1", sensors={"room": "ok"})
    client = make_client(None, clock=clock, agent_state=lambda: state)
    clock.now += 12.5
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ok",
        "ready": False,
        "model_loaded": False,
        "model": None,
        "uptime_s": 12.5,
        "device_id": "pi-1",
        "sensors": {"room": "ok"},
        "tensorflow_loaded": False,
        "federation": {
            "supernode": "disabled",
            "node_id": None,
            "restarts": 0,
            "last_exit": None,
            "last_error": None,
        },
        "trainer": None,
        "mqtt": {"enabled": False},
    }
    assert Healthz.decode(r.json()) == Healthz(False, None, 12.5, state)
    for method, path in (
        ("GET", "/api/info"),
        ("POST", "/api/predict"),
        ("GET", "/api/predict/latest"),
    ):
        r = client.request(method, path, json={"features": X})
        assert r.status_code == 503, path
        assert "no model is loaded" in r.json()["detail"]
        assert r.json()["field"] == "model"


def test_agent_state_failures_are_contained(make_client: Factory) -> None:
    def broken() -> AgentState:
        raise RuntimeError("sampler gone")

    r = make_client(agent_state=broken).get("/healthz")
    assert r.status_code == 200 and r.json()["model_loaded"] is True
    assert "device_id" not in r.json()  # the serving part alone


def test_info_describes_the_serving_model(make_client: Factory, bundles: Bundles) -> None:
    client = make_client()
    manifest = Manifest.load(bundles() / "manifest.json")
    info = client.get("/api/info").json()
    assert info["name"] == "mlp-classify" and info["version"] == "1"
    assert info["task"] == "classify" and info["family"] == "mlp"
    assert info["input"] == {
        "shape": [5],
        "feature_names": list(ROOM),
        "units": ["°C", "%", "hPa", "lx", "ppm"],
        "window": None,
        "dtype": "float32",
    }
    assert info["output"]["labels"] == ["empty", "occupied", "ventilating"]
    assert info["quantization"] == "float32" and info["sha256"] == manifest.sha256
    assert info["metrics"]["accuracy"] == manifest.metrics["accuracy"]
    assert info["created"] == manifest.created
    assert info["runtime"]["name"] == "ai-edge-litert"
    assert info["slot"] == "slot-a"
    health = client.get("/healthz").json()
    assert health["model"] == {"version": "1", "sha256": manifest.sha256, "quantization": "float32"}


def test_classify_features_instances_readings_agree(make_client: Factory) -> None:
    client = make_client()
    one = client.post("/api/predict", json={"features": X}).json()
    assert one["model_version"] == "1"
    assert set(one["timing"]) == {"preprocess_ms", "inference_ms"}
    result = one["result"]
    assert set(result["scores"]) == {"empty", "occupied", "ventilating"}
    assert result["label"] == max(result["scores"], key=result["scores"].get)
    assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    many = client.post("/api/predict", json={"instances": [X, X, X]}).json()["result"]
    assert len(many) == 3 and all(r == result for r in many)
    named = client.post("/api/predict", json={"readings": dict(zip(ROOM, X, strict=True))})
    assert named.json()["result"] == result


def test_regress_anomaly_forecast_and_image_results(make_client: Factory) -> None:
    values = make_client(("mlp", "regress")).post("/api/predict", json={"features": X}).json()
    assert list(values["result"]["values"]) == ["comfort_c"]
    anomaly = make_client(("autoencoder", "anomaly")).post("/api/predict", json={"features": X})
    result = anomaly.json()["result"]
    assert set(result) == {"score", "threshold", "anomaly"}
    assert result["anomaly"] == (result["score"] > result["threshold"])
    window = np.sin(np.arange(96)).reshape(32, 3).tolist()
    forecast = make_client(("cnn1d", "forecast")).post("/api/predict", json={"features": window})
    assert list(forecast.json()["result"]["values"]) == ["temp_c", "vibration_g", "current_a"]
    image = np.zeros((2, 12, 12, 1)).tolist()
    labels = make_client(("tiny_cnn", "classify")).post("/api/predict", json={"instances": image})
    assert [r["label"] in ("nw", "ne", "sw", "se") for r in labels.json()["result"]] == [True] * 2


BAD: list[tuple[Any, int, str]] = [
    (b"", 422, "body"),
    (b"{oops", 400, "body"),
    (b"[1, 2]", 422, "body"),
    ({}, 422, "body"),
    ({"features": X, "extra": 1}, 422, "extra"),
    ({"features": X, "readings": {}}, 422, "body"),
    ({"features": X[:4]}, 422, "features"),
    ({"features": [*X[:4], "hot"]}, 422, "features[4]"),
    ({"features": [*X[:4], True]}, 422, "features[4]"),
    ({"features": [*X[:4], None]}, 422, "features[4]"),
    (b'{"features": [21.3, 45.0, NaN, 120.0, 450.0]}', 422, "features[2]"),
    (b'{"features": [21.3, 45.0, Infinity, 120.0, 450.0]}', 422, "features[2]"),
    ({"features": [1e300, *X[1:]]}, 422, "features[0]"),
    ({"instances": []}, 422, "instances"),
    ({"instances": [X, X[:3]]}, 422, "instances[1]"),
    ({"readings": {"temp_c": 21.0}}, 422, "readings"),
    ({"readings": {**dict(zip(ROOM, X, strict=True)), "wind": 3}}, 422, "readings"),
    ({"readings": {**dict(zip(ROOM, X, strict=True)), "co2_ppm": "high"}}, 422, "readings.co2_ppm"),
]


@pytest.mark.parametrize(("payload", "status", "field"), BAD)
def test_bad_input_is_a_4xx_naming_the_field(
    make_client: Factory, payload: Any, status: int, field: str
) -> None:
    client = make_client()
    before = client.post("/api/predict", json={"features": X}).json()["result"]
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    r = client.post("/api/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status
    error = r.json()
    assert error["field"] == field
    assert error["detail"].startswith(f"{field}: expected")
    assert client.get("/api/info").json()["version"] == "1"
    assert client.post("/api/predict", json={"features": X}).json()["result"] == before
    metrics = client.get("/metrics").text
    assert 'orchard_predictions_total{endpoint="predict",outcome="invalid"} 1.0' in metrics


def test_readings_are_refused_for_windowed_models(make_client: Factory) -> None:
    r = make_client(("cnn1d", "forecast")).post(
        "/api/predict", json={"readings": {"temp_c": 1, "vibration_g": 2, "current_a": 3}}
    )
    assert r.status_code == 422 and "/api/predict/latest" in r.json()["detail"]


def test_body_limit_on_content_length_and_on_streamed_bytes(make_client: Factory) -> None:
    client = make_client(settings=HttpSettings(max_body_bytes=1024))
    big = json.dumps({"instances": [X] * 100}).encode()
    r = client.post("/api/predict", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["field"] == "body"
    assert "at most 1024 bytes" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        for i in range(0, len(big), 256):
            yield big[i : i + 256]

    r = client.post("/api/predict", content=chunks())
    assert r.status_code == 413 and "streamed" in r.json()["detail"]
    ok = client.post("/api/predict", json={"instances": [X] * 5})
    assert ok.status_code == 200


def test_bearer_token(make_client: Factory) -> None:
    client = make_client(settings=HttpSettings(token="s3cret"))
    assert client.get("/healthz").status_code == 200
    for path in ("/api/info", "/metrics", "/openapi.json", "/api/predict/latest", "/nowhere"):
        r = client.get(path)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["field"] == "Authorization"
    r = client.post("/api/predict", json={"features": X}, headers={"Authorization": "Bearer no"})
    assert r.status_code == 401 and "wrong token" in r.json()["detail"]
    good = {"Authorization": "Bearer s3cret"}
    assert client.post("/api/predict", json={"features": X}, headers=good).status_code == 200
    assert client.get("/api/info", headers=good).status_code == 200


def test_metrics_text(make_client: Factory) -> None:
    client = make_client()
    client.post("/api/predict", json={"features": X})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'orchard_predictions_total{endpoint="predict",outcome="ok"} 1.0' in text
    assert "orchard_inference_seconds_count 1.0" in text
    assert 'orchard_model_info{name="mlp-classify"' in text and 'version="1"' in text
    assert "orchard_model_loaded 1.0" in text


def test_unknown_paths_and_methods_answer_json(make_client: Factory) -> None:
    client = make_client()
    r = client.get("/nowhere")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found", "field": None}
    assert client.get("/api/predict").status_code == 405


def test_openapi_documents_the_contract(make_client: Factory) -> None:
    schema = make_client().get("/openapi.json").json()
    paths = schema["paths"]
    assert {"/healthz", "/api/info", "/api/predict", "/api/predict/latest", "/metrics"} <= set(
        paths
    )
    predict = paths["/api/predict"]["post"]
    assert predict["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PredictRequest"
    }
    ok = predict["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/PredictResponse"}
    assert "422" in predict["responses"] and "413" in predict["responses"]
    components = schema["components"]["schemas"]
    variants = components["PredictRequest"]["anyOf"]
    models = [components[v["$ref"].rsplit("/", 1)[1]] for v in variants]
    assert [list(m["properties"]) for m in models] == [["features"], ["instances"], ["readings"]]
    assert all(m["additionalProperties"] is False for m in models)
    assert {"ErrorResponse", "HealthResponse", "InfoResponse", "NumberArray"} <= set(components)


def test_responses_match_their_documented_models(make_client: Factory) -> None:
    """The routes serialise by hand; the pydantic models in /openapi.json must still hold."""
    from pydantic import TypeAdapter

    from agent.serve import schemas

    client = make_client()
    schemas.HealthResponse.model_validate(client.get("/healthz").json())
    info = client.get("/api/info").json()
    assert schemas.InfoResponse.model_validate(info).model_dump(mode="json") == info
    for body in ({"features": X}, {"instances": [X, X]}):
        answer = client.post("/api/predict", json=body).json()
        model = schemas.PredictResponse.model_validate(answer)
        assert model.model_dump(mode="json", exclude_none=True) == answer
    plain = make_client(labels=False).post("/api/predict", json={"features": X}).json()
    assert "prediction_id" not in plain  # no log, no id: the answer as before
    model = schemas.PredictResponse.model_validate(plain)
    assert model.model_dump(mode="json", exclude_none=True) == plain
    TypeAdapter(schemas.PredictRequest).validate_python({"features": X})
    error = client.post("/api/predict", json={"features": [1.0]}).json()
    assert schemas.ErrorResponse.model_validate(error).model_dump() == error
    empty = make_client(None)
    error = empty.get("/api/info").json()
    assert schemas.ErrorResponse.model_validate(error).model_dump() == error


def test_serving_imports_no_fastapi_or_pydantic(tmp_path: Path, bundles: Bundles) -> None:
    """FastAPI and pydantic cost ~17 MB in the always-on process: no request may import them,
    /openapi.json included (it serves the document generated from schemas.py at build time)."""
    script = f"""
import sys
from pathlib import Path
from starlette.testclient import TestClient
from agent.metrics import AgentMetrics
from agent.serve import HttpSettings, create_app
from agent.slots import ModelSlots
from agent.store import MemoryStore
UNWANTED = ("fastapi", "pydantic", "pydantic_core", "agent.serve.schemas", "agent.serve.docgen")
slots = ModelSlots(Path({str(tmp_path / "models")!r}))
slots.load()
app = create_app(slots=slots, store=MemoryStore(), metrics=AgentMetrics(process=False),
                 settings=HttpSettings(token="t"))
client = TestClient(app, headers={{"Authorization": "Bearer t"}})
statuses = [client.get("/healthz").status_code,
            client.post("/api/predict", json={{"features": {X!r}}}).status_code]
slots.install(Path({str(bundles())!r}))
for path in ("/healthz", "/api/info", "/metrics", "/api/predict/latest", "/nowhere"):
    statuses.append(client.get(path).status_code)
statuses.append(client.post("/api/predict", json={{"features": {X!r}}}).status_code)
statuses.append(client.get("/api/predict").status_code)
print(*statuses, [m for m in UNWANTED if m in sys.modules])
assert "PredictResponse" in client.get("/openapi.json").text
assert client.get("/docs").status_code == 200
print([m for m in UNWANTED if m in sys.modules])
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["200 503 200 200 200 409 404 200 405 []", "[]"]


# -- GET /api/predict/latest --------------------------------------------------------------------


def room_rows(n: int, t0: float = 1000.0) -> list[Sample]:
    return [Sample(ts=t0 + i, values=dict(zip(ROOM, X, strict=True))) for i in range(n)]


def test_latest_needs_a_store_and_data(make_client: Factory) -> None:
    assert make_client().get("/api/predict/latest").status_code == 503
    store = MemoryStore()
    client = make_client(store=store)
    r = client.get("/api/predict/latest")
    assert r.status_code == 409 and r.json()["field"] == "store"
    assert "no values ever stored for temp_c" in r.json()["detail"]
    store.append(Sample(ts=1.0, values={"temp_c": 20.0, "humidity_pct": 40.0}))
    r = client.get("/api/predict/latest")
    assert r.status_code == 409 and "pressure_hpa, light_lux, co2_ppm" in r.json()["detail"]


def test_latest_predicts_the_newest_row(make_client: Factory) -> None:
    store = MemoryStore()
    store.append_many(room_rows(3))
    client = make_client(store=store)
    latest = client.get("/api/predict/latest").json()
    direct = client.post("/api/predict", json={"features": X}).json()
    assert latest["result"] == direct["result"]
    assert latest["model_version"] == "1"
    assert "orchard_store_rows 3.0" in client.get("/metrics").text


def test_latest_builds_a_window(make_client: Factory) -> None:
    names = ("temp_c", "vibration_g", "current_a")
    store = MemoryStore()
    client = make_client(("cnn1d", "forecast"), store=store)
    rows = np.sin(np.arange(120)).reshape(40, 3) + 20.0
    store.append_many(
        Sample(ts=float(i), values=dict(zip(names, map(float, row), strict=True)))
        for i, row in enumerate(rows[:10])
    )
    r = client.get("/api/predict/latest")
    assert r.status_code == 409 and "expected 32 recent rows" in r.json()["detail"]
    assert "10 rows stored" in r.json()["detail"]
    store.append_many(
        Sample(ts=float(i), values=dict(zip(names, map(float, row), strict=True)))
        for i, row in enumerate(rows[10:], start=10)
    )
    latest = client.get("/api/predict/latest").json()
    direct = client.post("/api/predict", json={"features": rows[-32:].tolist()}).json()
    assert latest["result"]["values"] == pytest.approx(direct["result"]["values"], rel=1e-5)


def test_openapi_describes_the_labels_the_serving_model_takes(
    make_client: Factory, bundles: Bundles
) -> None:
    import schemathesis

    from agent.labels.requests import value_ranges

    schema = make_client().get("/openapi.json").json()
    components = schema["components"]["schemas"]
    for name in ("PredictionLabel", "ReadingLabel"):
        label = components[name]["properties"]["label"]
        assert label["enum"] == ["empty", "occupied", "ventilating"] and label["description"]
    assert components["LabelBatch"]["properties"]["labels"]["maxItems"] == 100
    schemathesis.openapi.from_dict(schema).validate()

    regress = make_client(("mlp", "regress")).get("/openapi.json").json()
    label = regress["components"]["schemas"]["ReadingLabel"]["properties"]["label"]
    number, whole = label["anyOf"]
    manifest = Manifest.load(bundles("mlp", "regress") / "manifest.json")
    ((low, high),) = value_ranges(manifest).values()
    assert number == {"type": "number", "minimum": low, "maximum": high}
    assert whole["required"] == ["comfort_c"] and whole["additionalProperties"] is False
    plain = make_client(labels=False).get("/openapi.json").json()["components"]["schemas"]
    assert "enum" not in plain["PredictionLabel"]["properties"]["label"]  # the generic body
