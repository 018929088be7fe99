"""RoundGrid fed with recorded replies: who answered, who failed, who never replied."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.server.superlink.linkstate.utils import create_message_error_unavailable_res_message

from coordinator.federation.grid import RoundGrid
from tests.coordinator.federation.grids import StubGrid

pytestmark = pytest.mark.usefixtures("task_identity")


class RecordedGrid(StubGrid):
    """Answers as the SuperLink would: ``answers[node]`` is "ok", "unavailable" or absent."""

    def __init__(self, answers: dict[int, str]) -> None:
        self.answers = answers

    def get_node_ids(self) -> Iterable[int]:
        return sorted(self.answers)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        replies = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = msg.object_id  # as pushing does
            answer = self.answers.get(msg.metadata.dst_node_id)
            if answer == "ok":
                content = RecordDict(
                    {
                        "arrays": ArrayRecord([np.ones(3, np.float32)]),
                        "metrics": MetricRecord({"num-examples": 10}),
                    }
                )
                replies.append(Message(content, reply_to=msg))
            elif answer == "unavailable":  # written by the SuperLink, from its own node id
                replies.append(
                    create_message_error_unavailable_res_message(msg.metadata, "node_unavail")
                )
        return replies


def _train_messages(nodes: Iterable[int]) -> list[Message]:
    return [
        Message(RecordDict({"arrays": ArrayRecord([np.zeros(3, np.float32)])}), node, "train")
        for node in nodes
    ]


def test_a_superlink_error_reply_is_charged_to_the_node_it_was_sent_to() -> None:
    view = RoundGrid(RecordedGrid({11: "ok", 12: "unavailable", 13: "silent", 14: "ok"}))
    replies = view.send_and_receive(_train_messages([11, 12, 13, 14]), timeout=1.0)
    assert len(list(replies)) == 3
    phase = view.phases[0].to_dict()
    by_node = {r["node_id"]: r for r in phase["replies"]}
    assert sorted(by_node) == [11, 12, 14]  # not the SuperLink's own id
    assert (
        by_node[12]["error"]["code"] != 0 and "Node Unavailable" in (by_node[12]["error"]["reason"])
    )
    assert "error" not in by_node[11] and by_node[11]["arrays"] == [[3]]
    assert phase["no_reply"] == [13]  # the node that errored is not also "missing"
    assert [r["node_id"] for r in view.phases[0].failures] == [12]


def test_only_the_allowed_nodes_are_offered() -> None:
    view = RoundGrid(RecordedGrid({11: "ok", 12: "ok", 13: "ok"}), allowed=[11, 13])
    assert list(view.get_node_ids()) == [11, 13]
    assert list(RoundGrid(RecordedGrid({11: "ok"})).get_node_ids()) == [11]


def test_an_empty_phase_is_recorded_without_asking_the_superlink() -> None:
    view = RoundGrid(RecordedGrid({}))
    assert list(view.send_and_receive([], timeout=1.0)) == []
    assert view.phases[0].to_dict()["sent_to"] == [] and view.phases[0].missing() == []
