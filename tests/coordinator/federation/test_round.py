"""The round loop in-process: a Grid whose devices answer from a script, no processes.

Each test drives ``FederatedRun`` (or one ``Round``) through the real strategy, aggregation,
checkpoint and history code; only the devices are replaced, by replies built the way the
ClientApp builds them (one ArrayRecord, one MetricRecord with the declared keys).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import ArrayRecord, Error, Message, MetricRecord, RecordDict

from agent.federation.messages import EVALUATE_KEYS, TRAIN_KEYS, ErrorCode
from coordinator.federation.errors import RunFailed
from coordinator.federation.history import load
from coordinator.federation.privacy_modes import Privacy, PrivacyMode
from coordinator.federation.round import Round
from coordinator.federation.rounds import FederatedRun
from coordinator.federation.runconfig import RunSettings
from models import synthetic
from tests.coordinator.federation.grids import StubGrid
from tests.fakes import FakeClock

SPEC = synthetic.make("mlp", "classify", n=10, seed=1).spec


pytestmark = pytest.mark.usefixtures("task_identity")


class ScriptedGrid(StubGrid):
    """Devices that answer as ``behaviour[node]`` says: "ok", "fail" or "late" (no reply).

    An "ok" device adds ``step`` to every array it is sent, reports ``examples`` examples and a
    train loss of half its node id.
    Every message sent is kept in ``sent``.
    """

    def __init__(self, behaviour: dict[int, str], step: float = 0.5, examples: int = 10) -> None:
        self.behaviour = behaviour
        self.step = step
        self.examples = examples
        self.sent: list[Message] = []

    def get_node_ids(self) -> Iterable[int]:
        return sorted(self.behaviour)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        replies = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = msg.object_id  # as pushing does
            self.sent.append(msg)
            what = self.behaviour[msg.metadata.dst_node_id]
            if what == "fail":
                error = Error(int(ErrorCode.TRAINER_FAILED), "trainer: the peer closed")
                replies.append(Message(error, reply_to=msg))
            elif what == "ok":
                replies.append(Message(self._content(msg), reply_to=msg))
        return replies

    def _content(self, msg: Message) -> RecordDict:
        n = float(self.examples)
        if msg.metadata.message_type == "train":
            arrays = next(iter(msg.content.array_records.values())).to_numpy_ndarrays()
            trained = [np.asarray(a + self.step, np.float32) for a in arrays]
            node = msg.metadata.dst_node_id
            metrics = {k: 0.5 for k in TRAIN_KEYS} | {"num-examples": n, "loss": 0.5 * node}
            return RecordDict({"arrays": ArrayRecord(trained), "metrics": MetricRecord(metrics)})
        metrics = {k: 0.25 for k in EVALUATE_KEYS} | {"num-examples": n}
        return RecordDict({"metrics": MetricRecord(metrics)})


class Outcomes:
    """The Fleet protocol, recording what the run reports per round."""

    def __init__(self, allowed: Iterable[int] | None = None) -> None:
        self.allowed = None if allowed is None else set(allowed)
        self.rounds: dict[int, dict[int, tuple[bool, str]]] = {}

    def select(self, nodes: list[int]) -> tuple[list[int], dict[int, str]]:
        if self.allowed is None:
            return nodes, {}
        eligible = [n for n in nodes if n in self.allowed]
        return eligible, {n: "too hot" for n in nodes if n not in self.allowed}

    def record(self, rnd: int, outcomes: dict[int, tuple[bool, str]]) -> None:
        self.rounds[rnd] = outcomes


def settings(tmp_path: Path, **changes: Any) -> RunSettings:
    values: dict[str, Any] = {
        "num_server_rounds": 1,
        "min_devices": 1,
        "round_timeout": 5.0,
        "wait_for_devices": 30.0,
        "model_spec": json.dumps(SPEC.to_dict()),
        "quantization": "float32",
        "out_dir": str(tmp_path / "runs"),
    }
    return RunSettings(**(values | changes))


def test_a_round_keeps_the_healthy_replies_when_one_fails_and_one_is_late(tmp_path: Path) -> None:
    grid = ScriptedGrid({1: "ok", 2: "ok", 3: "fail", 4: "late"})
    fleet = Outcomes()
    run = FederatedRun(grid, settings(tmp_path), "r1", fleet=fleet)
    run.execute()

    history = load(tmp_path / "runs" / "r1" / "history.json")
    assert history is not None and history["status"] == "completed"
    [record] = history["rounds"]
    assert record["selected"] == [1, 2, 3, 4]
    assert record["train"] is not None and record["train"]["loss"] == pytest.approx(0.75)
    train = record["phases"]["train"]
    assert train["no_reply"] == [4]
    assert [(r["node_id"], "error" in r) for r in train["replies"]] == [
        (1, False),
        (2, False),
        (3, True),
    ]
    assert record["failures"] == 4  # node 3 and node 4, in train and in evaluate
    assert fleet.rounds[1] == {
        1: (True, "ok"),
        2: (True, "ok"),
        3: (False, "trainer: the peer closed"),
        4: (False, "no reply before the round timeout"),
    }
    # the two healthy updates were averaged: every trained array moved by the step
    assert record["update_norm"] > 0
    assert record["evaluate"]["loss"] == pytest.approx(0.25)
    manifest = json.loads((tmp_path / "runs" / "r1" / "round-1" / "manifest.json").read_text())
    assert manifest["version"] == "r1.1" and record["model"]["quantization"] == "float32"


def test_every_device_failing_keeps_the_global_model(tmp_path: Path) -> None:
    grid = ScriptedGrid({1: "fail", 2: "late"})
    run = FederatedRun(grid, settings(tmp_path), "r2", fleet=Outcomes())
    state = run.prepare()
    before = [a.copy() for a in state.arrays]
    record = Round(1, state, grid, run.fleet, run.privacy).execute()
    assert record["train"] is None and record["update_norm"] == 0.0
    assert all(np.array_equal(a, b) for a, b in zip(state.arrays, before, strict=True))
    assert record["failures"] == 4


def test_an_empty_round_fails_after_the_bounded_wait(tmp_path: Path) -> None:
    clock = FakeClock(0.0)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    grid = ScriptedGrid({1: "ok", 2: "ok"})
    fleet = Outcomes(allowed=[])  # both connected, both skipped by the health policy
    run = FederatedRun(
        grid, settings(tmp_path, min_devices=2), "r3", fleet=fleet, clock=clock, sleep=sleep
    )
    expected = (
        r"round 1: only 0 of 2 required devices available after 30 s "
        r"\(2 connected; node 1: too hot; node 2: too hot\)"
    )
    with pytest.raises(RunFailed, match=expected):
        run.execute()
    assert sum(waits) == pytest.approx(30.0) and not grid.sent
    history = load(tmp_path / "runs" / "r3" / "history.json")
    assert history is not None and history["status"] == "failed" and history["rounds"] == []


def test_only_the_selected_devices_are_sent_the_round(tmp_path: Path) -> None:
    grid = ScriptedGrid({1: "ok", 2: "ok", 3: "ok"})
    run = FederatedRun(grid, settings(tmp_path), "r4", fleet=Outcomes(allowed=[1, 3]))
    run.execute()
    assert {m.metadata.dst_node_id for m in grid.sent} == {1, 3}
    history = load(tmp_path / "runs" / "r4" / "history.json")
    assert history is not None and history["rounds"][0]["skipped"] == {"2": "too hot"}


class Recording(PrivacyMode):
    """A privacy option that records where the round called it and adds one config key."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def configure(self, rnd: Round, config: dict[str, Any]) -> None:
        self.calls.append("configure")
        config["recording"] = 1

    def received(self, rnd: Round, replies: list[Message]) -> list[Message]:
        self.calls.append(f"received {len(replies)}")
        return [r for r in replies if r.metadata.src_node_id == 1]  # node 2's is dropped

    def aggregated(self, rnd: Round, replies: list[Message]) -> None:
        self.calls.append("aggregated")

    def publish(self, rnd: Round) -> None:
        self.calls.append("publish")
        rnd.record.setdefault("privacy", {})[self.name] = {"round": rnd.number}


def test_a_privacy_mode_plugs_in_through_its_hooks(tmp_path: Path) -> None:
    grid = ScriptedGrid({1: "ok", 2: "ok"})
    run = FederatedRun(grid, settings(tmp_path), "r5", fleet=Outcomes())
    state = run.prepare()
    mode = Recording()
    record = Round(1, state, grid, run.fleet, Privacy([mode])).execute()

    assert mode.calls == ["configure", "received 2", "aggregated", "publish"]
    train_configs = [
        dict(next(iter(m.content.config_records.values())))
        for m in grid.sent
        if m.metadata.message_type == "train"
    ]
    assert train_configs == [{"server-round": 1, "frozen-arrays": "", "recording": 1}] * 2
    assert record["privacy"] == {"recording": {"round": 1}}
    assert record["updates"]["received"] == [pytest.approx(record["updates"]["received"][0])] * 2
    assert record["train"]["loss"] == pytest.approx(0.5)  # node 1's alone, not 0.75
