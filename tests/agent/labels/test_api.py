"""``POST /api/predict`` ids and ``POST /api/labels`` over real HTTP (uvicorn on loopback), with
a real SQLite store and prediction log: where a label goes, and that every refusal is a 4xx
naming the field that leaves everything stored as it was."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from agent.labels.requests import MAX_BATCH
from agent.trainer.data import load as training_data
from models.spec import ModelSpec
from tests.agent.labels.conftest import ROOM, T0, Agent, MakeAgent, X, room_rows
from tests.fakes import FakeClock


def stored(agent: Agent) -> dict[str, Any]:
    """Everything a label could change: the readings (values and labels) and the log."""
    ds = agent.store.dataset(ROOM, labels=False)
    labelled = agent.store.dataset(ROOM, labels=True)
    log = agent.labels.log
    log.flush()
    rows = log._conn.execute(
        "SELECT seq, label, labelled_ts, correct, abs_error FROM predictions ORDER BY seq"
    ).fetchall()
    return {
        "x": ds.x.tolist(),
        "ts": ds.ts.tolist(),
        "labels": (
            labelled.ts.tolist(),
            [] if labelled.labels is None else labelled.labels.tolist(),
        ),
        "features": sorted(agent.store.features()),
        "log": rows,
    }


def test_predictions_carry_ids_one_per_instance(make_agent: MakeAgent) -> None:
    agent = make_agent()
    one = agent.predict({"features": X})
    many = agent.predict({"instances": [X, X, X]})
    named = agent.predict({"readings": dict(zip(ROOM, X, strict=True))})
    ids = [one["prediction_id"], *many["prediction_ids"], named["prediction_id"]]
    assert len(set(ids)) == 5 and all(isinstance(i, str) and i for i in ids)
    assert "prediction_ids" not in one and "prediction_id" not in many
    assert isinstance(many["result"], list) and len(many["result"]) == 3  # shape unchanged
    assert agent.labels.log.count() == 5


def test_a_label_by_prediction_id_lands_on_the_log(make_agent: MakeAgent) -> None:
    agent = make_agent()
    answer = agent.predict({"features": X})
    predicted = answer["result"]["label"]
    r = agent.label({"prediction_id": answer["prediction_id"], "label": predicted})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "accepted": 1,
        "results": [{"prediction_ids": [answer["prediction_id"]], "sample_ts": None}],
    }
    (label, correct) = agent.labels.log._conn.execute(
        "SELECT label, correct FROM predictions"
    ).fetchone()
    assert (label, correct) == (predicted, 1)
    # a prediction on a request body has no stored reading: the store is untouched
    assert agent.store.stats().rows == 0


def test_a_label_for_latest_reaches_the_training_data(make_agent: MakeAgent) -> None:
    """The label of a /api/predict/latest prediction is set on the reading it was computed
    from, where store.dataset(labels=True), and so the trainer, read it."""
    agent = make_agent()
    agent.store.append_many(room_rows(3))
    answer = agent.latest()
    r = agent.label({"prediction_id": answer["prediction_id"], "label": "ventilating"})
    assert r.status_code == 200, r.text
    newest = T0 + 20.0
    assert r.json()["results"] == [
        {"prediction_ids": [answer["prediction_id"]], "sample_ts": newest}
    ]
    ds = agent.store.dataset(ROOM, labels=True)
    assert ds.ts.tolist() == [newest] and ds.labels is not None
    assert ds.labels.tolist() == ["ventilating"]


@pytest.mark.parametrize("store", ["sqlite", "memory"])
def test_a_reading_gone_since_leaves_the_label_on_the_log(
    make_agent: MakeAgent, store: str
) -> None:
    agent = make_agent(store=store, max_rows=3)
    agent.store.append_many(room_rows(3))
    pid = agent.latest()["prediction_id"]
    agent.store.append_many(room_rows(3, t0=T0 + 100))  # retention drops the three first
    agent.store.enforce_retention()
    r = agent.label({"prediction_id": pid, "label": "empty"})
    assert r.status_code == 200
    assert r.json()["results"] == [{"prediction_ids": [pid], "sample_ts": None}]
    labels = agent.store.dataset(ROOM, labels=True).labels
    assert labels is not None and labels.tolist() == []


def test_timestamp_labels_become_training_labels(make_agent: MakeAgent) -> None:
    """Thirty readings labelled by time (a batch) are what agent.trainer.data.load trains on."""
    agent = make_agent()
    agent.store.append_many(room_rows(30))
    manifest = agent.manifest()
    assert manifest is not None
    classes = manifest.labels
    batch = [
        {"timestamp": T0 + 10.0 * i + 4.0, "label": classes[i % 3]}  # 4 s after the reading
        for i in range(30)
    ]
    r = agent.label({"labels": batch})
    assert r.status_code == 200, r.text
    assert [x["sample_ts"] for x in r.json()["results"]] == [T0 + 10.0 * i for i in range(30)]
    data = training_data(agent.store, ModelSpec.from_dict(manifest.spec), val_fraction=0.2)
    assert data.examples == 24 and data.skipped_labels == 0
    assert data.y_train is not None and data.y_val is not None
    y = np.concatenate([data.y_train, data.y_val]).tolist()
    assert y == [i % 3 for i in range(30)]


def test_timestamp_form_matches_the_newest_reading_within_the_tolerance(
    make_agent: MakeAgent,
) -> None:
    agent = make_agent(match_tolerance_s=5.0)
    agent.store.append_many(room_rows(3))  # T0, T0+10, T0+20
    latest = agent.latest()  # computed from T0+20
    r = agent.label({"timestamp": T0 + 24.0, "label": "occupied"})
    assert r.status_code == 200
    assert r.json()["results"] == [
        {"prediction_ids": [latest["prediction_id"]], "sample_ts": T0 + 20.0}
    ]
    before = stored(agent)
    for ts in (T0 + 16.0, T0 - 1.0):  # 6 s after a reading; before the first one
        r = agent.label({"timestamp": ts, "label": "occupied"})
        assert r.status_code == 404 and r.json()["field"] == "timestamp", r.text
        assert "at most 5 s before" in r.json()["detail"]
    assert stored(agent) == before


def test_regression_labels_are_checked_and_become_targets(make_agent: MakeAgent) -> None:
    agent = make_agent(("mlp", "regress"))
    agent.store.append_many(room_rows(2))
    answer = agent.latest()
    predicted = answer["result"]["values"]["comfort_c"]
    before = stored(agent)
    for bad in (2150.0, -400, "warm", True, None, {"comfort_c": 1e6}, {"other": 20.0}):
        r = agent.label({"prediction_id": answer["prediction_id"], "label": bad})
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["field"] in ("label", "label.comfort_c")
        assert r.json()["detail"].startswith(r.json()["field"] + ": expected")
    assert stored(agent) == before
    r = agent.label({"prediction_id": answer["prediction_id"], "label": predicted + 1.5})
    assert r.status_code == 200, r.text
    # the value is now the reading's regression target, where the trainer looks for it
    ds = agent.store.dataset((*ROOM, "comfort_c"))
    assert ds.ts.tolist() == [T0 + 10.0]
    assert ds.x[0, -1] == pytest.approx(predicted + 1.5, rel=1e-6)
    abs_error = agent.labels.log._conn.execute("SELECT abs_error FROM predictions").fetchone()
    assert abs_error[0] == pytest.approx(1.5, rel=1e-4)


def test_forecast_labels_name_each_output_and_stay_on_the_log(make_agent: MakeAgent) -> None:
    agent = make_agent(("cnn1d", "forecast"))
    window = (np.sin(np.arange(96)).reshape(32, 3) + 20.0).tolist()
    answer = agent.predict({"features": window})
    values = answer["result"]["values"]
    r = agent.label({"prediction_id": answer["prediction_id"], "label": 20.0})
    assert r.status_code == 422 and r.json()["field"] == "label"
    assert "temp_c, vibration_g, current_a" in r.json()["detail"]
    r = agent.label(
        {"prediction_id": answer["prediction_id"], "label": {**values, "current_a": 99.0}}
    )
    assert r.status_code == 422 and r.json()["field"] == "label.current_a"
    r = agent.label({"prediction_id": answer["prediction_id"], "label": values})
    assert r.status_code == 200, r.text
    error = agent.labels.log._conn.execute("SELECT abs_error FROM predictions").fetchone()[0]
    assert error == pytest.approx(0.0, abs=1e-5)


def test_anomaly_models_take_no_labels(make_agent: MakeAgent) -> None:
    agent = make_agent(("autoencoder", "anomaly"))
    answer = agent.predict({"features": X})
    r = agent.label({"prediction_id": answer["prediction_id"], "label": 1.0})
    assert r.status_code == 422 and r.json()["field"] == "label"
    assert "classify, regress or forecast" in r.json()["detail"]


def test_no_model_is_a_503(make_agent: MakeAgent) -> None:
    agent = make_agent(None)
    r = agent.label({"timestamp": T0, "label": "empty"})
    assert r.status_code == 503 and r.json()["field"] == "model"


BAD: list[tuple[Any, int, str]] = [
    (b"{oops", 400, "body"),
    (b"", 422, "body"),
    (b"[1, 2]", 422, "body"),
    ({}, 422, "body"),
    ({"label": "empty"}, 422, "body"),
    ({"prediction_id": "PID", "timestamp": T0, "label": "empty"}, 422, "body"),
    ({"prediction_id": "PID"}, 422, "label"),
    ({"prediction_id": "PID", "label": "empty", "note": 1}, 422, "note"),
    ({"prediction_id": 7, "label": "empty"}, 422, "prediction_id"),
    ({"prediction_id": "x" * 65, "label": "empty"}, 422, "prediction_id"),
    ({"timestamp": "yesterday", "label": "empty"}, 422, "timestamp"),
    ({"timestamp": -5, "label": "empty"}, 422, "timestamp"),
    (b'{"timestamp": NaN, "label": "empty"}', 422, "timestamp"),
    ({"prediction_id": "PID", "label": "kitchen"}, 422, "label"),
    ({"prediction_id": "PID", "label": 1}, 422, "label"),
    ({"prediction_id": "PID", "label": ["empty"]}, 422, "label"),
    ({"prediction_id": "0000-1", "label": "empty"}, 404, "prediction_id"),
    ({"prediction_id": "no such id", "label": "empty"}, 404, "prediction_id"),
    ({"labels": []}, 422, "labels"),
    ({"labels": "PID"}, 422, "labels"),
    ({"labels": [{"prediction_id": "PID", "label": "empty"}] * (MAX_BATCH + 1)}, 422, "labels"),
    ({"labels": [], "label": "x"}, 422, "label"),
    ({"labels": [{"prediction_id": "PID", "label": "empty"}, 3]}, 422, "labels[1]"),
    (
        {
            "labels": [{"prediction_id": "PID", "label": "empty"}] * 3
            + [{"prediction_id": "PID", "label": "kitchen"}]
        },
        422,
        "labels[3].label",
    ),
    (
        {
            "labels": [
                {"prediction_id": "PID", "label": "empty"},
                {"timestamp": 1.0, "label": "empty"},
            ]
        },
        404,
        "labels[1].timestamp",
    ),
    (
        {
            "labels": [
                {"prediction_id": "PID", "label": "empty"},
                {"prediction_id": "PID-ff", "label": "empty"},
            ]
        },
        404,
        "labels[1].prediction_id",
    ),
]


@pytest.mark.parametrize(("payload", "status", "field"), BAD)
def test_refusals_name_the_field_and_change_nothing(
    make_agent: MakeAgent, payload: Any, status: int, field: str
) -> None:
    agent = make_agent()
    agent.store.append_many(room_rows(3))
    pid = agent.latest()["prediction_id"]
    agent.predict({"instances": [X, X]})
    before = stored(agent)
    if isinstance(payload, bytes):
        body = payload.replace(b"PID", pid.encode())
    else:
        body = json.dumps(payload).replace("PID", pid).encode()
    r = agent.client.post("/api/labels", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["field"] == field
    assert r.json()["detail"].startswith(f"{field}: expected")
    assert stored(agent) == before
    # and the agent still takes a good label
    assert agent.label({"prediction_id": pid, "label": "empty"}).status_code == 200


def test_a_label_flood_is_rate_limited(make_agent: MakeAgent, monotonic: FakeClock) -> None:
    agent = make_agent(max_per_minute=6)
    answer = agent.predict({"instances": [X] * 8})
    ids = answer["prediction_ids"]
    r = agent.label({"labels": [{"prediction_id": i, "label": "empty"} for i in ids[:4]]})
    assert r.status_code == 200
    r = agent.label({"labels": [{"prediction_id": i, "label": "empty"} for i in ids[4:7]]})
    assert r.status_code == 429, "6 a minute: 4 + 3 is one too many"
    assert r.json()["field"] == "labels" and "6 labels a minute" in r.json()["detail"]
    assert r.headers["retry-after"] == "10"  # one token comes every 10 s
    before = stored(agent)
    for _ in range(5):  # garbage costs a token too
        assert agent.client.post("/api/labels", content=b"{").status_code in (400, 429)
    assert stored(agent) == before
    monotonic.advance(60.0)  # a minute later the bucket is full again
    r = agent.label({"labels": [{"prediction_id": i, "label": "empty"} for i in ids[4:8]]})
    assert r.status_code == 200, r.text
    assert agent.labels.log._conn.execute("SELECT COUNT(label) FROM predictions").fetchone()[0] == 8


def test_the_rate_limit_changes_live(make_agent: MakeAgent, monotonic: FakeClock) -> None:
    """A remote configuration change of [labels] max_per_minute applies at once, on the
    service's own clock."""
    import dataclasses

    agent = make_agent(max_per_minute=600)
    ids = agent.predict({"instances": [X] * 6})["prediction_ids"]
    agent.labels.update(dataclasses.replace(agent.labels.settings, max_per_minute=3))
    r = agent.label({"labels": [{"prediction_id": i, "label": "empty"} for i in ids[:3]]})
    assert r.status_code == 200, r.text
    r = agent.label({"prediction_id": ids[3], "label": "empty"})
    assert r.status_code == 429 and "3 labels a minute" in r.json()["detail"]
    monotonic.advance(60.0)  # the new bucket refills on the fake clock, as the old one did
    assert agent.label({"prediction_id": ids[3], "label": "empty"}).status_code == 200


def test_labels_survive_a_restart_of_the_log(make_agent: MakeAgent, tmp_path: Any) -> None:
    """Predictions pending at a clean stop are written; ids are never reused after it."""
    agent = make_agent()
    ids = agent.predict({"instances": [X, X]})["prediction_ids"]
    path = agent.labels.log.path
    agent.close()
    from agent.labels import PredictionLog

    log = PredictionLog(path)
    try:
        assert log.count() == 2
        assert {log.id_of(s) for s in log.entries([log.seq_of(i) or 0 for i in ids])} == set(ids)
        assert set(log.ids(2)).isdisjoint(ids)
    finally:
        log.close()
