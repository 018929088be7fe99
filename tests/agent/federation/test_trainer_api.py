"""Trainer request and reply headers: round trips and a named error for every wrong field."""

from __future__ import annotations

from typing import Any

import pytest

from agent.federation.trainer_api import (
    TrainerMessageError,
    TrainerReply,
    TrainerRequest,
    TrainParams,
)
from models import synthetic

SPEC = synthetic.make("mlp", "classify", n=10, seed=1).spec.to_dict()
FIT = TrainerRequest(
    op="fit",
    run_id="42",
    round=3,
    spec=SPEC,
    train=TrainParams(epochs=2, batch_size=16, learning_rate=0.05, mu=0.1),
    quantization="float32",
    model_name="room",
    personalize=True,
)


def test_requests_round_trip() -> None:
    assert TrainerRequest.decode(FIT.encode()) == FIT
    ping = TrainerRequest(op="ping")
    assert TrainerRequest.decode(ping.encode()) == ping


def test_replies_round_trip() -> None:
    ok = TrainerReply(ok=True, metrics={"loss": 0.5, "num-examples": 10.0})
    assert TrainerReply.decode(ok.encode()) == ok
    failed = TrainerReply.failed(605, "arrays: expected 6 weight arrays")
    assert TrainerReply.decode(failed.encode()) == failed
    assert failed.encode()["ok"] is False


@pytest.mark.parametrize("kind", [TrainerRequest, TrainerReply])
def test_an_unknown_version_is_named(kind: Any) -> None:
    header = FIT.encode() if kind is TrainerRequest else TrainerReply(ok=True).encode()
    with pytest.raises(
        TrainerMessageError, match=r"expected version to be 1\. Received: version=2"
    ):
        kind.decode({**header, "version": 2})
    missing = {k: v for k, v in header.items() if k != "version"}
    with pytest.raises(TrainerMessageError, match="Received: version=None"):
        kind.decode(missing)


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("op", "dance", "op"),
        ("op", None, "op"),
        ("spec", None, "spec"),
        ("spec", "mlp", "spec"),
        ("run_id", 42, "run_id"),
        ("round", -1, "round"),
        ("round", "3", "round"),
        ("round", True, "round"),
        ("quantization", 8, "quantization"),
        ("model_name", None, "model_name"),
        ("personalize", 1, "personalize"),
        ("train", [], "train"),
        ("train", {"epochs": 0.5}, "train.epochs"),
        ("train", {"batch_size": -32}, "train.batch_size"),
        ("train", {"learning_rate": "fast"}, "train.learning_rate"),
        ("train", {"mu": float("nan")}, "train.mu"),
        ("train", {"mu": -0.1}, "train.mu"),
    ],
)
def test_each_wrong_request_field_is_named(field: str, value: Any, named: str) -> None:
    header = {**FIT.encode(), field: value}
    with pytest.raises(TrainerMessageError) as info:
        TrainerRequest.decode(header)
    message = str(info.value)
    assert message.startswith(f"trainer request: expected {named} to be "), message
    assert f"Received: {named}=" in message


def test_a_ping_needs_no_spec_and_missing_fields_take_their_defaults() -> None:
    request = TrainerRequest.decode({"op": "ping", "version": 1})
    assert request == TrainerRequest(op="ping")


@pytest.mark.parametrize(
    ("header", "named"),
    [
        ({"ok": "yes"}, "ok"),
        ({"ok": True, "metrics": {"loss": "low"}}, "metrics"),
        ({"ok": True, "metrics": {"loss": float("inf")}}, "metrics"),
        ({"ok": True, "metrics": [1, 2]}, "metrics"),
        ({"ok": False, "error": "boom"}, "code"),
        ({"ok": False, "code": 605, "error": 7}, "error"),
        ({"ok": True, "pid_rss_mb": "big"}, "pid_rss_mb"),
    ],
)
def test_each_wrong_reply_field_is_named(header: dict[str, Any], named: str) -> None:
    with pytest.raises(TrainerMessageError, match=rf"trainer reply: expected {named} to be .*"):
        TrainerReply.decode({**header, "version": 1})


def test_a_header_that_is_no_object_is_refused() -> None:
    with pytest.raises(TrainerMessageError, match="expected an object"):
        TrainerRequest.decode([1, 2])  # type: ignore[arg-type]
