"""Live metrics per model version (health's ``models``) from the prediction log: served
predictions over real HTTP, two versions through the real slots, labels posted as a client
would, and the section validated by the health schema the coordinator decodes with."""

from __future__ import annotations

import math
import time

import pytest

from agent.health.schema import Health, HealthParts, LiveModel, parts_dict
from agent.health_sections import health_sections
from agent.labels.live import EPSILON, live_model, psi
from agent.labels.logdb import Summary
from agent.metrics import AgentMetrics
from agent.sensors import Sampler, build_sensors
from tests.agent.labels.conftest import Agent, MakeAgent, X
from tests.agent.serve.bundles import Bundles
from tests.fakes import FakeClock


def test_psi() -> None:
    assert psi({"a": 50, "b": 50}, {"a": 5, "b": 5}) == 0.0
    assert psi({}, {"a": 1}) is None and psi({"a": 1}, {}) is None
    # p = (0.9, 0.1), q = (0.5, 0.5)
    expected = (0.9 - 0.5) * math.log(0.9 / 0.5) + (0.1 - 0.5) * math.log(0.1 / 0.5)
    assert psi({"a": 9, "b": 1}, {"a": 5, "b": 5}) == pytest.approx(expected)
    # a class one side never predicted counts as EPSILON, not zero (no infinity)
    disjoint = psi({"a": 10}, {"b": 10})
    assert disjoint == pytest.approx(2 * (1 - EPSILON) * math.log(1 / EPSILON))


def test_classes_beyond_the_schema_limit_are_summed() -> None:
    classes = {f"c{i:03d}": 100 - i for i in range(80)}
    summary = Summary("7", 80, 0, None, None, None, classes, 0, None, None, 1.0)
    model = live_model(summary)
    assert len(model.classes) == 64 and model.classes["_other"] == sum(range(21, 38))
    assert model.classes["c000"] == 100
    Health.validate(_health(HealthParts(models=(model,))))  # within the schema's 64 keys


def _health(parts: HealthParts) -> dict[str, object]:
    return {
        "seq": 1,
        "ts": 1.0,
        "uptime_s": 1.0,
        "cpu_pct": 1.0,
        "load": [0.0, 0.0, 0.0],
        "memory": {"total_mb": 1.0, "available_mb": 1.0, "pct": 1.0},
        "disk": {"free_mb": 1.0, "pct": 1.0},
        "rss_mb": 1.0,
        **parts_dict(parts),
    }


def _latencies(agent: Agent, version: str) -> list[float]:
    agent.labels.log.flush()
    rows = agent.labels.log._conn.execute(
        "SELECT latency_ms FROM predictions WHERE version = ? AND failed = 0 ORDER BY latency_ms",
        (version,),
    ).fetchall()
    return [r[0] for r in rows]


def _rank(values: list[float], q: float) -> float:
    return values[max(1, math.ceil(q * len(values))) - 1]


def test_two_versions_side_by_side(make_agent: MakeAgent, bundles: Bundles) -> None:
    agent = make_agent()
    v1 = agent.predict({"instances": [X, [25.0, 60.0, 1010.0, 300.0, 900.0]] * 5})
    labels_v1 = [r["label"] for r in v1["result"]]
    ids = v1["prediction_ids"]
    # four labels: three agree with the prediction, one does not
    wrong = next(c for c in ("empty", "occupied", "ventilating") if c != labels_v1[3])
    body = [{"prediction_id": ids[i], "label": labels_v1[i]} for i in range(3)]
    body.append({"prediction_id": ids[3], "label": wrong})
    assert agent.label({"labels": body}).status_code == 200
    manifest = agent.manifest()
    assert manifest is not None and manifest.version == "1"
    (only,) = agent.labels.live_models(manifest)
    lat = _latencies(agent, "1")
    expected_classes: dict[str, int] = {}
    for c in labels_v1:
        expected_classes[c] = expected_classes.get(c, 0) + 1
    top_scores = [max(r["scores"].values()) for r in v1["result"]]
    assert only == LiveModel(
        version="1",
        predictions=10,
        errors=0,
        p50_ms=round(_rank(lat, 0.5), 4),
        p99_ms=round(_rank(lat, 0.99), 4),
        mean_confidence=round(sum(top_scores) / 10, 4),
        classes=dict(sorted(expected_classes.items(), key=lambda kv: (-kv[1], kv[0]))),
        drift_psi=None,  # no previous version yet
        labelled=4,
        accuracy=0.75,
        mae=None,
        since=only.since,
    )
    assert only.since is not None and abs(only.since - time.time()) < 60

    agent.install(bundles("mlp", "classify", "float32", "2"))
    new = agent.manifest()
    assert new is not None and new.version == "2"
    serving, previous = agent.labels.live_models(new)
    assert serving.version == "2" and serving.predictions == 0 and serving.drift_psi is None
    assert previous.version == "1" and previous.predictions == 10 and previous.accuracy == 0.75

    v2 = agent.predict({"instances": [X] * 6})
    agent.labels.log.record_failure("2", 2, 0.001)  # as inference errors are logged
    serving, previous = agent.labels.live_models(new)
    classes_v2 = {v2["result"][0]["label"]: 6}
    assert serving.predictions == 8 and serving.errors == 2 and serving.classes == classes_v2
    assert serving.drift_psi == pytest.approx(psi(classes_v2, expected_classes), abs=1e-6)
    assert serving.labelled == 0 and serving.accuracy is None
    assert previous.version == "1" and previous.drift_psi is None
    # what health carries: it validates, and holds counts only, never a label or an id
    payload = Health.validate(_health(HealthParts(models=(serving, previous))))
    text = payload.to_json()
    assert all(i not in text for i in ids) and "prediction" not in text.replace("predictions", "")


def test_regression_reports_mae(make_agent: MakeAgent) -> None:
    agent = make_agent(("mlp", "regress"))
    answer = agent.predict({"instances": [X, X]})
    value = answer["result"][0]["values"]["comfort_c"]
    ids = answer["prediction_ids"]
    body = {
        "labels": [
            {"prediction_id": ids[0], "label": value + 2.0},
            {"prediction_id": ids[1], "label": value - 1.0},
        ]
    }
    assert agent.label(body).status_code == 200
    (model,) = agent.labels.live_models(agent.manifest())
    assert model.classes == {} and model.accuracy is None and model.mean_confidence is None
    assert model.labelled == 2 and model.mae == pytest.approx(1.5, abs=1e-4)


def test_health_sections_fill_models(make_agent: MakeAgent) -> None:
    agent = make_agent()
    agent.predict({"features": X})
    sampler = Sampler(build_sensors({"env": {"driver": "synthetic"}}, clock=time.time), print)
    parts = health_sections(AgentMetrics(process=False), sampler, agent.slots, None, None)
    assert parts.models is None  # no label service: the section is left out
    parts = health_sections(
        AgentMetrics(process=False), sampler, agent.slots, None, None, agent.labels
    )
    assert parts.models is not None and [m.version for m in parts.models] == ["1"]
    assert parts.models[0].predictions == 1
    Health.validate(_health(parts))
    agent.labels.log.close()  # a log that cannot be read costs this section only
    parts = health_sections(
        AgentMetrics(process=False), sampler, agent.slots, None, None, agent.labels
    )
    assert parts.models is None and parts.model is not None


def test_live_metrics_are_cached_while_the_log_changes(
    make_agent: MakeAgent, monotonic: FakeClock
) -> None:
    agent = make_agent()
    agent.labels._cache_s = 10.0
    manifest = agent.manifest()
    agent.predict({"features": X})
    assert agent.labels.live_models(manifest)[0].predictions == 1
    agent.predict({"features": X})
    assert agent.labels.live_models(manifest)[0].predictions == 1  # within 10 s: cached
    monotonic.advance(10.0)
    assert agent.labels.live_models(manifest)[0].predictions == 2
    monotonic.advance(60.0)
    first = agent.labels.live_models(manifest)
    assert agent.labels.live_models(manifest) is first  # nothing changed: no query at all


def test_a_version_installed_again_starts_from_zero(
    make_agent: MakeAgent, bundles: Bundles
) -> None:
    """v1 is judged, v2 replaces it, v1 comes back (a rollback): v1's figures restart, so a
    coordinator never judges a new rollout on what a version did in an earlier one."""
    agent = make_agent()  # serves "1"
    first = agent.predict({"instances": [X] * 6})
    body = [{"prediction_id": i, "label": "empty"} for i in first["prediction_ids"]]
    assert agent.label({"labels": body}).status_code == 200
    agent.install(bundles("mlp", "classify", "float32", "2"))
    agent.predict({"instances": [X] * 3})
    agent.install(bundles("mlp", "classify", "float32", "1"))
    again = agent.manifest()
    assert again is not None and again.version == "1"
    serving, previous = agent.labels.live_models(again)
    assert (serving.version, serving.predictions, serving.labelled) == ("1", 0, 0)
    assert (previous.version, previous.predictions) == ("2", 3)
    agent.predict({"instances": [X] * 2})
    serving, _ = agent.labels.live_models(again)
    assert serving.predictions == 2 and serving.since is not None
    # the first period is archived, not lost: its labels are still in the log
    agent.labels.log.flush()
    archived = agent.labels.log._conn.execute(
        "SELECT COUNT(*), COUNT(label) FROM predictions WHERE version LIKE '1@%'"
    ).fetchone()
    assert tuple(archived) == (6, 6)
