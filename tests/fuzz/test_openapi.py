"""Schemathesis against a real ``orchard-agent run`` over HTTP, driven by its ``/openapi.json``.

Every generated request (valid and invalid bodies, wrong methods, missing and wrong tokens)
must get a documented status with a body that matches the documented schema, never a 5xx.
Around every call the test reads what the agent exposes as state (the serving model and slot,
``/metrics`` model and store figures, the files under the model directory): a rejected request
changes none of it, and an accepted one changes only the ok-prediction counters.

The agent runs as a real process (not ASGI in-process) so the bytes go through uvicorn, the
pure-ASGI guard and the predict fast lane exactly as in production. The cases are generated
from the same document built at import time (schemathesis' lazy ``from_fixture`` loader
touches pytest internals that pytest 9 removed); ``test_the_served_document_is_the_fuzzed_one``
proves the running agent serves exactly that document. Runs are reproducible: a fixed
schemathesis seed, deterministic generation, no example database, a bounded example count.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from schemathesis import Case

from agent.metrics import AgentMetrics
from agent.serve import HttpSettings, create_app, docs
from agent.slots import ModelSlots
from models import synthetic
from tests.agent.serve.bundles import Bundles
from tests.fuzz.agent_process import TOKEN, AgentProcess, state_of
from tests.fuzz.conftest import DEEP, fuzz

pytestmark = pytest.mark.slow

SEED = 20_260_607
SERVED_SPEC = synthetic.make("mlp", "classify", n=10, seed=1).spec.input  # conftest's bundle
GUARDED_DENIAL = 401


def _config(*, token: str | None) -> schemathesis.Config:
    data: dict[str, Any] = {
        **({} if DEEP else {"seed": SEED}),
        "request-timeout": 10,
        "generation": {
            "mode": "all",  # schema-valid and schema-invalid requests
            # per operation, fuzzing phase; the examples and coverage phases add their own
            "max-examples": 30 * max(DEEP, 1),
            "deterministic": not DEEP,
            "database": "none",
        },
        "phases": {"stateful": {"enabled": False}},  # no links between operations to follow
    }
    if token is not None:
        data["auth"] = {"openapi": {"bearer": {"bearer": token}}}
    return schemathesis.Config.from_dict(data)


def _document() -> dict[str, Any]:
    """The document the agent serves with a token set and the room classifier loaded.

    Built from the model's input spec alone (no model file, disk or network needed); the
    served document must be exactly this one (test_the_served_document_is_the_fuzzed_one).
    """
    app = create_app(
        slots=ModelSlots(Path("/nonexistent/orchard-fuzz")),
        store=None,
        metrics=AgentMetrics(process=False),
        settings=HttpSettings(token=TOKEN),
    )
    classes = synthetic.make("mlp", "classify", n=10, seed=1).spec.labels
    fit = docs.label_fit({"type": "string", "enum": list(classes)}, 100)
    return docs.openapi(app, bearer=True, spec=SERVED_SPEC, labels=fit)


DOCUMENT = _document()
with_token = schemathesis.openapi.from_dict(DOCUMENT, config=_config(token=TOKEN))
without_token = schemathesis.openapi.from_dict(DOCUMENT, config=_config(token=None))


@pytest.fixture(scope="module")
def observer(serving_agent: AgentProcess) -> Any:
    with httpx.Client(base_url=serving_agent.url, timeout=10) as client:
        yield client


def test_the_served_document_is_the_fuzzed_one(serving_agent: AgentProcess) -> None:
    with serving_agent.client() as client:
        assert client.get("/openapi.json").json() == DOCUMENT
        anonymous = httpx.get(f"{serving_agent.url}/openapi.json", timeout=10)
    assert anonymous.status_code == GUARDED_DENIAL
    guarded = {
        p for p, ops in DOCUMENT["paths"].items() for op in ops.values() if op.get("security")
    }
    assert guarded == {
        "/api/info",
        "/api/predict",
        "/api/predict/latest",
        "/api/labels",
        "/metrics",
    }


def _header(response: schemathesis.Response, name: str) -> str:
    values = {k.lower(): v for k, v in response.headers.items()}.get(name, [""])
    return values[0]


def _unchanged(before: dict[str, Any], after: dict[str, Any], *, accepted: bool) -> None:
    if accepted:  # a served prediction may count itself, nothing else
        before = {k: v for k, v in before.items() if k not in ("ok_predictions", "inferences")}
        after = {k: v for k, v in after.items() if k not in ("ok_predictions", "inferences")}
    assert after == before


@with_token.parametrize()
def test_every_request_gets_a_documented_answer_and_changes_no_state(
    case: Case, serving_agent: AgentProcess, observer: httpx.Client
) -> None:
    before = state_of(serving_agent, observer)
    response = case.call(base_url=serving_agent.url)
    case.validate_response(response)  # no 5xx; status, content type, headers, body as documented
    assert response.status_code < 500, response.text
    after = state_of(serving_agent, observer)
    _unchanged(before, after, accepted=response.status_code < 400)
    if response.status_code >= 400 and _header(response, "content-type") == "application/json":
        body = response.json()
        if isinstance(body, dict) and "detail" in body:
            assert body["detail"], "an error names what was expected and what was received"


@without_token.parametrize()
def test_without_the_token_only_healthz_answers(
    case: Case, serving_agent: AgentProcess, observer: httpx.Client
) -> None:
    before = state_of(serving_agent, observer)
    response = case.call(base_url=serving_agent.url)
    case.validate_response(response)
    after = state_of(serving_agent, observer)
    if case.operation.path == "/healthz":
        assert response.status_code in (200, 405), response.text
    else:
        assert response.status_code == GUARDED_DENIAL, (case.operation.label, response.text)
        assert _header(response, "www-authenticate").startswith("Bearer")
        assert response.json()["field"] == "Authorization"
    _unchanged(before, after, accepted=False)
    assert after["ok_predictions"] == before["ok_predictions"]


# -- raw bodies: what no OpenAPI generator sends (not JSON, deep nesting, odd numbers) ----------

KEYS = ["features", "instances", "readings", "x"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(KEYS), json_values, max_size=3).map(
        lambda v: json.dumps(v).encode()
    ),
    st.integers(1, 5000).map(lambda n: b'{"features": ' + b"[" * n + b"]" * n + b"}"),
    st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"9" * 5000]).map(
        lambda n: b'{"features": [' + n + b", 1, 2, 3, 4]}"
    ),
)


@fuzz(150)
@given(body=bodies, content_type=st.sampled_from(["application/json", "text/plain", ""]))
def test_raw_bodies_are_refused_cleanly(
    serving_agent: AgentProcess, observer: httpx.Client, body: bytes, content_type: str
) -> None:
    before = state_of(serving_agent, observer)
    headers = {**serving_agent.headers, "Content-Type": content_type}
    r = observer.post("/api/predict", content=body, headers=headers)
    assert r.status_code in (200, 400, 413, 422), (body[:200], r.status_code, r.text)
    answer = r.json()
    if r.status_code == 200:
        assert answer["model_version"] == "1"
    else:
        assert answer["detail"] and "field" in answer
    _unchanged(before, state_of(serving_agent, observer), accepted=r.status_code == 200)
    assert serving_agent.alive()


def test_the_document_follows_the_serving_model(tmp_path: Path, bundles: Bundles) -> None:
    """No model: generic bodies. A model: its exact input. Another input: a new document."""
    from starlette.testclient import TestClient

    slots = ModelSlots(tmp_path / "models")
    slots.load()
    app = create_app(
        slots=slots, store=None, metrics=AgentMetrics(process=False), settings=HttpSettings()
    )
    client = TestClient(app)

    def request_schemas() -> dict[str, Any]:
        components: dict[str, Any] = client.get("/openapi.json").json()["components"]["schemas"]
        assert "securitySchemes" not in client.get("/openapi.json").json()["components"]
        return components

    generic = request_schemas()
    assert generic["FeaturesRequest"]["properties"]["features"] == {
        "$ref": "#/components/schemas/NumberArray",
        "description": "One sample, nested as the model's input shape.",
    }
    slots.install(bundles("mlp", "classify", "float32", "1"))
    rooms = request_schemas()
    features = rooms["FeaturesRequest"]["properties"]["features"]
    assert (features["minItems"], features["maxItems"]) == (5, 5)
    assert features["items"]["type"] == "number"
    readings = rooms["ReadingsRequest"]["properties"]["readings"]
    assert readings["required"] == list(SERVED_SPEC.feature_names)
    assert readings["additionalProperties"] is False
    slots.install(bundles("cnn1d", "forecast", "float32", "1"))
    windows = request_schemas()
    features = windows["FeaturesRequest"]["properties"]["features"]
    assert (features["minItems"], features["items"]["minItems"]) == (32, 3)
    assert "ReadingsRequest" not in windows  # named readings fit single-row models only
    variants = windows["PredictRequest"]["anyOf"]
    assert {v["$ref"].rsplit("/", 1)[1] for v in variants} == {
        "FeaturesRequest",
        "InstancesRequest",
    }
