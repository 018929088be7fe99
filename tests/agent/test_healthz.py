"""The /healthz document: what the agent encodes, readers decode; wrong fields are named."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.federation.status import TrainerStatus
from agent.healthz import (
    AgentState,
    Healthz,
    HealthzError,
    ModelRef,
    MqttLink,
    Supernode,
    Trainer,
)

FULL = Healthz(
    ready=True,
    model=ModelRef("r1.3", "ab" * 32, "int8"),
    uptime_s=12.5,
    agent=AgentState(
        device_id="pi-1",
        sensors={"room": "ok", "board": "failing"},
        tensorflow_loaded=False,
        federation=Supernode("connected", node_id=42, restarts=1, last_exit=0),
        trainer=Trainer(TrainerStatus(state="training", round=3, pid=77), starts=2, running=True),
        mqtt=MqttLink(True, True, "5", None),
    ),
)


def test_round_trip_through_json() -> None:
    doc = json.loads(json.dumps(FULL.encode()))
    assert Healthz.decode(doc) == FULL
    assert doc["model_loaded"] is True and doc["trainer"]["state"] == "training"
    assert doc["trainer"]["starts"] == 2 and doc["federation"]["node_id"] == 42


def test_the_serving_part_alone_round_trips() -> None:
    alone = Healthz(ready=False, model=None, uptime_s=0.5)
    assert Healthz.decode(alone.encode()) == alone
    assert "device_id" not in alone.encode()


def _doc(**changes: Any) -> dict[str, Any]:
    return {**FULL.encode(), **changes}


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"ready": "yes"}, "expected ready to be bool. Received: ready='yes'"),
        ({"uptime_s": True}, "expected uptime_s to be int or float. Received: uptime_s=True"),
        ({"device_id": 7}, "expected device_id to be str. Received: device_id=7"),
        ({"sensors": {"room": 1}}, "expected sensors to map names to states"),
        ({"model": "r1"}, "expected model to be an object. Received: 'r1'"),
        ({"model": {"version": "1"}}, "healthz: model: "),
        ({"federation": {"supernode": "up", "colour": 1}}, "healthz: federation: "),
        ({"mqtt": None}, "expected mqtt to be an object. Received: None"),
        ({"trainer": {"state": "napping"}}, "healthz: trainer: trainer status: expected state"),
    ],
)
def test_each_wrong_field_is_named(changes: dict[str, Any], words: str) -> None:
    with pytest.raises(HealthzError) as info:
        Healthz.decode(_doc(**changes))
    assert words in str(info.value)


def test_a_non_object_is_refused() -> None:
    with pytest.raises(HealthzError, match="expected a JSON object"):
        Healthz.decode([1, 2, 3])
