"""The trainer as a real process: started on demand through the supervisor's socket."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from agent import config as agent_config
from agent.federation import status, wire
from agent.federation.messages import EVALUATE_KEYS, TRAIN_KEYS
from agent.federation.trainer_api import TrainerRequest, TrainParams, call
from agent.federation.trainer_supervisor import TrainerSupervisor
from tests.agent.trainer.conftest import SPEC
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.fleet]


def _initial_weights() -> list[np.ndarray]:
    from models import families

    return [np.asarray(w, np.float32) for w in families.build(SPEC).get_weights()]


def _supervisor(device_dir: Path, **budget: object) -> TrainerSupervisor:
    cfg = agent_config.load(device_dir / "agent.toml")
    if budget:
        import dataclasses

        cfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, **budget))
    sup = TrainerSupervisor(
        cfg.federation, cfg.training, config_path=device_dir / "agent.toml", state_dir=cfg.state_dir
    )
    sup.start()
    return sup


def test_fit_then_evaluate_in_one_warm_trainer(device_dir: Path) -> None:
    sup = _supervisor(device_dir)
    try:
        weights = _initial_weights()
        request = TrainerRequest(
            op="fit",
            run_id="r1",
            round=1,
            spec=SPEC.to_dict(),
            train=TrainParams(epochs=2, batch_size=32, learning_rate=0.01),
        )
        reply, out = call(str(device_dir / "t.sock"), request, weights, timeout=120)
        assert reply.ok, reply
        assert sorted(reply.metrics) == sorted(TRAIN_KEYS)
        assert [a.shape for a in out] == [w.shape for w in weights]
        assert reply.metrics["num-examples"] == 320
        assert reply.metrics["val_metric"] > 0.6, reply  # balanced classes: chance is 1/3
        assert sup.starts == 1

        trained = out
        request = replace(request, op="evaluate", quantization="int8", model_name="t")
        reply, out = call(str(device_dir / "t.sock"), request, trained, timeout=120)
        assert reply.ok, reply
        assert sorted(reply.metrics) == sorted(EVALUATE_KEYS) and out == []
        inbox = device_dir / "models" / "inbox"
        assert not inbox.exists() or not any(inbox.iterdir())  # evaluating installs nothing
        assert sup.starts == 1  # warm: the same process answered both
        st = status.read(status.path_for(device_dir))
        assert st.last_outcome == "ok" and st.state == "idle"

        # Personalisation: the head is fine-tuned locally; both results are reported, and
        # personal_* are the personalised model's only when it beats the global one.
        # A global model whose head says nothing (zeros): the local head must win.
        mute = [*trained[:-2], np.zeros_like(trained[-2]), np.zeros_like(trained[-1])]
        request = replace(request, round=2, personalize=True)
        reply, _ = call(str(device_dir / "t.sock"), request, mute, timeout=120)
        m = reply.metrics
        assert reply.ok
        assert m["personalized"] == 1.0 and m["personal_metric"] > m["metric"], m
        # A trained global model: served as is unless the local head beats it.
        request = replace(request, round=3)
        reply, _ = call(str(device_dir / "t.sock"), request, trained, timeout=120)
        m = reply.metrics
        if m["personalized"]:
            assert m["personal_metric"] > m["metric"]
        else:
            assert m["personal_metric"] == m["metric"]
    finally:
        sup.stop()


def test_bad_arrays_are_refused_and_the_trainer_stays_up(device_dir: Path) -> None:
    sup = _supervisor(device_dir)
    try:
        request = TrainerRequest(op="fit", round=1, spec=SPEC.to_dict())
        reply, _ = call(str(device_dir / "t.sock"), request, [np.zeros(3, np.float32)], timeout=120)
        assert not reply.ok and reply.code == 605 and "weight arrays" in str(reply.error)
        # a header that is no request at all: refused by name, the trainer stays up
        bad, _ = wire.call(str(device_dir / "t.sock"), {"op": "dance"}, timeout=30)
        assert bad["code"] == 605 and "expected version to be 1" in bad["error"]
        reply, _ = call(str(device_dir / "t.sock"), TrainerRequest(op="ping"), timeout=30)
        assert reply.ok and sup.starts == 1
    finally:
        sup.stop()


def test_over_memory_budget_is_killed_and_recorded(device_dir: Path) -> None:
    sup = _supervisor(device_dir, memory_mb=120)  # TensorFlow alone needs several times this
    try:
        request = TrainerRequest(op="fit", round=1, spec=SPEC.to_dict())
        with pytest.raises(wire.WireError):
            call(str(device_dir / "t.sock"), request, _initial_weights(), timeout=120)
        wait_until(lambda: sup.kills, 30, "the supervisor's kill")
        st = status.read(status.path_for(device_dir))
        assert sup.kills == 1 and st.last_outcome == "over_memory"
        assert st.last_reason is not None and "memory_mb 120" in st.last_reason
        assert st.peak_rss_mb is not None and st.peak_rss_mb > 120
    finally:
        sup.stop()
