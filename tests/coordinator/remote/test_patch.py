"""KEY=VALUE arguments as a patch: TOML values kept as text, removals, every wrong one named."""

from __future__ import annotations

import re

import pytest

from agent.remote.command import FORBIDDEN, MAX_PATCH
from coordinator.remote.errors import PatchError
from coordinator.remote.patch import effective, parse


def test_values_stay_toml_text_and_empty_or_unset_removes() -> None:
    patch = parse(
        [
            "sampling.interval_s=5",
            "training.allowed_hours=[6,22]",
            'labels.mqtt_topic="home/x"',
            "sensors.room-1.interval_s = 10",
            "logging.level=",
        ],
        unset=["training.memory_mb"],
    )
    assert patch == {
        "sampling.interval_s": "5",
        "training.allowed_hours": "[6,22]",
        "labels.mqtt_topic": '"home/x"',
        "sensors.room-1.interval_s": "10",
        "logging.level": None,
        "training.memory_mb": None,
    }


@pytest.mark.parametrize("key", ["device_id", "fleet", "mqtt.host", "mqtt.tls_ca", "http.token"])
def test_a_key_that_never_changes_remotely_is_refused(key: str) -> None:
    with pytest.raises(PatchError) as caught:
        parse([f"{key}=1"])
    assert len(caught.value.errors) == 1
    assert caught.value.errors[0].startswith(f"{key}: expected a key that may change remotely")
    with pytest.raises(PatchError, match=re.escape(key)):
        parse([], unset=[key])


def test_every_wrong_argument_is_named_at_once() -> None:
    with pytest.raises(PatchError) as caught:
        parse(
            [
                "sampling.interval_s=fast",  # not a TOML value (a string needs quotes)
                "Sampling.x=1",  # not a key the command carries
                "training.allowed_hours=[6,",  # broken list
                'labels.mqtt_topic=1\nmqtt.host="evil"',  # a second key smuggled in
                "novalue",
                'models.trust_ca="/tmp/ca.pem"',
                "sampling.interval_s=6",  # given twice (the first was wrong, this one counts)
                "sampling.interval_s=7",
            ]
        )
    errors = caught.value.errors
    assert errors[0].startswith("sampling.interval_s: expected one TOML value on one line")
    assert "Received: interval_s='fast'" in errors[0]
    assert errors[1].startswith("Sampling.x: expected a dotted key like section.key")
    assert errors[2].startswith("training.allowed_hours: expected one TOML value")
    assert errors[3].startswith("labels.mqtt_topic: expected one TOML value")
    assert errors[4] == (
        "patch: expected KEY=VALUE (KEY= removes the key). Received: patch='novalue'"
    )
    assert errors[5].startswith("models.trust_ca: expected a key that may change remotely")
    assert errors[6].startswith("sampling.interval_s: expected each key once")
    assert len(errors) == 7
    assert "nothing was sent" in str(caught.value)


def test_an_empty_or_oversized_patch_is_refused() -> None:
    with pytest.raises(PatchError, match="at least one KEY=VALUE or --unset KEY"):
        parse([])
    with pytest.raises(PatchError, match=f"at most {MAX_PATCH}"):
        parse([f"sensors.s{i}.interval_s=1" for i in range(MAX_PATCH + 1)])


def test_forbidden_list_is_the_contract() -> None:
    # the CLI refuses exactly what the board refuses, prefixes included
    assert "mqtt.tls_" in FORBIDDEN
    with pytest.raises(PatchError, match=r"mqtt\.tls_key"):
        parse(['mqtt.tls_key="/x"'])
    assert parse(["mqtt.keepalive_s=60"]) == {"mqtt.keepalive_s": "60"}


def test_effective_folds_in_order_and_keeps_removals() -> None:
    assert effective(
        [
            {"sampling.interval_s": "5", "labels.mqtt_topic": '"a"'},
            {"sampling.interval_s": "10", "training.memory_mb": "300"},
            {"labels.mqtt_topic": None},
        ]
    ) == {"labels.mqtt_topic": None, "sampling.interval_s": "10", "training.memory_mb": "300"}
    assert effective([]) == {}
