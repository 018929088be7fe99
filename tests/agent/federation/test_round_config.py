"""What a device reads of the run and of each round: named errors, and in step with RunSettings."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from agent.federation.messages import MessageSchemaError
from agent.federation.round_config import DeviceRunConfig, LocalDp, RoundConfig
from coordinator.federation.runconfig import RunSettings
from models import synthetic

SPEC = synthetic.make("mlp", "classify", n=10, seed=1).spec.to_dict()


def run_config(**changes: Any) -> dict[str, Any]:
    return RunSettings(model_spec=json.dumps(SPEC)).replace(**changes).to_run_config()


@pytest.mark.parametrize("kind", [DeviceRunConfig, LocalDp])
def test_every_field_a_device_reads_is_a_run_setting_with_the_same_default(kind: Any) -> None:
    # Flower's run config is flat: the device reads the flat names of the grouped settings.
    settings = {k.replace("-", "_"): v for k, v in RunSettings().to_run_config().items()}
    for field in dataclasses.fields(kind):
        assert field.name in settings, field.name
        if field.default is not dataclasses.MISSING:
            assert field.default == settings[field.name], field.name


def test_the_coordinators_run_config_decodes_on_the_device() -> None:
    config = DeviceRunConfig.decode(run_config(local_epochs=3, learning_rate=0.05))
    assert config.model_spec == SPEC and config.local_epochs == 3
    assert config.learning_rate == 0.05 and config.quantization == "int8"
    dp = LocalDp.decode(run_config(local_dp_epsilon=2.0))
    assert dp.local_dp_epsilon == 2.0


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"model-spec": "{nope"}, "expected model-spec to be a JSON object"),
        ({"model-spec": "[1]"}, "expected model-spec to be a JSON object"),
        (
            {"local-epochs": 1.5},
            "expected local-epochs to be an integer. Received: local-epochs=1.5",
        ),
        ({"learning-rate": "fast"}, "expected learning-rate to be a number"),
        ({"quantization": 8}, "expected quantization to be a string"),
        ({"local-epochs": True}, "expected local-epochs to be an integer"),
    ],
)
def test_a_wrong_run_setting_is_named(changes: dict[str, Any], words: str) -> None:
    with pytest.raises(MessageSchemaError) as info:
        DeviceRunConfig.decode({**run_config(), **changes})
    assert words in str(info.value)


def test_a_missing_model_spec_is_named() -> None:
    config = run_config()
    del config["model-spec"]
    with pytest.raises(MessageSchemaError, match="expected model-spec to be a value"):
        DeviceRunConfig.decode(config)


def test_round_config_round_trips_and_refuses_nonsense() -> None:
    sent = RoundConfig(server_round=4, proximal_mu=0.1, frozen_arrays=(0, 1))
    assert RoundConfig.decode(sent.encode(), arrays=6) == sent
    assert RoundConfig.decode({}, arrays=6) == RoundConfig()
    with pytest.raises(MessageSchemaError, match="expected server-round to be a round number"):
        RoundConfig.decode({"server-round": "four"}, arrays=6)
    with pytest.raises(MessageSchemaError, match="expected proximal-mu to be a number >= 0"):
        RoundConfig.decode({"proximal-mu": -1.0}, arrays=6)
