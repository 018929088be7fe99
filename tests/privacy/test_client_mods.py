"""The devices' side of the privacy options: mods on the train handler, frozen statistics."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ArrayRecord, Context, Error, Message, MetricRecord, RecordDict

from agent.clientapp import app as client_app
from agent.federation.messages import TRAIN_KEYS, MessageSchemaError, check_metrics
from agent.federation.round_config import RoundConfig

pytestmark = pytest.mark.usefixtures("task_identity")


def _context(**run_config: bool | float) -> Context:
    return Context(run_id=7, node_id=5, node_config={}, state=RecordDict(), run_config=run_config)


def _train_message(arrays: list[np.ndarray]) -> Message:
    return Message(RecordDict({"arrays": ArrayRecord(arrays)}), dst_node_id=5, message_type="train")


def test_frozen_arrays_must_name_arrays_of_the_model() -> None:
    assert RoundConfig.decode({"frozen-arrays": "0,1"}, 8).frozen_arrays == (0, 1)
    assert RoundConfig.decode({"frozen-arrays": ""}, 8).frozen_arrays == ()
    for bad in ("0,8", "a,b", "-1"):
        with pytest.raises(MessageSchemaError) as info:
            RoundConfig.decode({"frozen-arrays": bad}, 8)
        assert f"expected frozen-arrays to be indices below 8. Received: frozen-arrays={bad!r}" in (
            str(info.value)
        )


def test_mods_pass_the_message_through_when_the_run_does_not_ask() -> None:
    msg = _train_message([np.ones(3, np.float32)])
    seen: list[Message] = []

    def handler(m: Message, c: Context) -> Message:
        seen.append(m)
        return Message(RecordDict({"metrics": MetricRecord({"loss": 1.0})}), reply_to=m)

    context = _context(**{"secure-aggregation": False, "local-dp": False})
    client_app.secure_aggregation(msg, context, handler)
    client_app.local_dp(msg, context, handler)
    assert seen == [msg, msg] and len(context.state) == 0


def test_local_dp_noises_the_trained_arrays_when_on() -> None:
    sent = [np.zeros(400, np.float32)]
    msg = _train_message(sent)

    def handler(m: Message, c: Context) -> Message:
        content = RecordDict(
            {
                "arrays": ArrayRecord([np.full(400, 0.5, np.float32)]),
                "metrics": MetricRecord({"num-examples": 10}),
            }
        )
        return Message(content, reply_to=m)

    run = {
        "local-dp": True,
        "local-dp-clipping-norm": 1.0,
        "local-dp-sensitivity": 1.0,
        "local-dp-epsilon": 1.0,
        "local-dp-delta": 1e-5,
    }
    out = client_app.local_dp(msg, _context(**run), handler)
    (array,) = out.content.array_records["arrays"].to_numpy_ndarrays()
    sigma = np.sqrt(2 * np.log(1.25 / 1e-5))
    assert abs(float(np.std(array)) - sigma) < 0.15 * sigma  # noise of the promised size
    assert abs(float(np.mean(array)) - 0.05) < 0.2 * sigma  # around the clipped update (norm 1)


def test_a_refused_secagg_round_raises_so_flower_reports_the_device_dropped() -> None:
    msg = Message(
        RecordDict({client_app.LEGACY_IN: ArrayRecord([np.ones(2, np.float32)])}),
        dst_node_id=5,
        message_type="train",
    )

    def refused(m: Message, c: Context) -> Message:
        return Message(Error(code=601, reason="training budget gate closed: too hot"), reply_to=m)

    with pytest.raises(client_app.RoundRefusedError, match="too hot"):
        client_app._as_update(refused)(msg, _context())


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), True, "0.5"])
def test_a_reply_never_carries_a_metric_that_is_not_a_finite_number(bad: object) -> None:
    metrics: dict[str, object] = {key: 1.0 for key in TRAIN_KEYS}
    assert check_metrics("train", metrics) == metrics  # type: ignore[arg-type]
    metrics["val_loss"] = bad
    with pytest.raises(MessageSchemaError, match=r"expected a finite number\. Received: val_loss="):
        check_metrics("train", metrics)  # type: ignore[arg-type]
