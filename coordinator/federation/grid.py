"""A Grid view for one round: only the eligible nodes, and a record of what crossed the wire.

Flower's strategies sample from ``grid.get_node_ids()``; wrapping the real Grid lets the
health-aware selection decide who is offered a round without touching the strategy. Every
``send_and_receive`` is recorded: destinations, replies, failures, bytes each way, and each
reply's array shapes and metric keys (the privacy test reads these from history.json).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flwr.app import Message
from flwr.serverapp import Grid


def _bytes(msg: Message) -> int:
    if msg.has_error() or not msg.has_content():
        return 0
    total = 0
    for record in msg.content.values():
        try:
            total += int(record.count_bytes())
        except (ValueError, IndexError):  # flwr 1.41 fails on empty strings/lists (SecAgg+)
            total += len(record.deflate())
    return total


@dataclass
class Phase:
    """One ``send_and_receive`` call."""

    sent_to: list[int] = field(default_factory=list)
    bytes_sent: int = 0
    replies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.replies if "error" in r]

    def missing(self) -> list[int]:
        answered = {r["node_id"] for r in self.replies}
        return [n for n in self.sent_to if n not in answered]

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent_to": self.sent_to,
            "bytes_sent": self.bytes_sent,
            "bytes_received": sum(r.get("bytes", 0) for r in self.replies),
            "replies": self.replies,
            "no_reply": self.missing(),
        }


class RoundGrid(Grid):
    """Delegates to ``inner``; ``allowed`` (None = all) limits the nodes strategies see."""

    def __init__(self, inner: Grid, allowed: Iterable[int] | None = None) -> None:
        self.inner = inner
        self.allowed = None if allowed is None else set(allowed)
        self.phases: list[Phase] = []

    def set_run(self, run: Any) -> None:  # the real Grid is already bound to the run
        self.inner.set_run(run)

    @property
    def run(self) -> Any:
        return self.inner.run

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        return self.inner.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        nodes = list(self.inner.get_node_ids())
        return nodes if self.allowed is None else [n for n in nodes if n in self.allowed]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.inner.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        messages = list(messages)
        phase = Phase(
            sent_to=[m.metadata.dst_node_id for m in messages],
            bytes_sent=sum(_bytes(m) for m in messages),
        )
        self.phases.append(phase)
        if not messages:
            return []
        replies = list(self.inner.send_and_receive(messages, timeout=timeout))
        # Pushing gave each message its id. A reply names the message it answers; its source
        # is not always the node: errors the SuperLink writes itself ("Node Unavailable" for a
        # node that stopped sending heartbeats) come from the SuperLink's own node id.
        sent = {m.metadata.message_id: m.metadata.dst_node_id for m in messages}
        sent.pop("", None)  # never pushed (an in-process grid): the reply's source stands
        for reply in replies:
            phase.replies.append(describe(reply, sent.get(reply.metadata.reply_to_message_id)))
        return replies


def describe(reply: Message, node_id: int | None = None) -> dict[str, Any]:
    """What a reply held, without its values: node, error or array shapes and metric keys.

    ``node_id``: the node the answered message was sent to (default: the reply's source).
    """
    node = reply.metadata.src_node_id if node_id is None else node_id
    out: dict[str, Any] = {"node_id": node, "bytes": _bytes(reply)}
    if reply.has_error():
        out["error"] = {"code": reply.error.code, "reason": reply.error.reason}
        return out
    content = reply.content
    out["records"] = {name: type(rec).__name__ for name, rec in content.items()}
    out["arrays"] = [
        list(arr.shape) for rec in content.array_records.values() for arr in rec.values()
    ]
    out["metric_keys"] = sorted(k for rec in content.metric_records.values() for k in rec)
    out["metrics"] = {k: v for rec in content.metric_records.values() for k, v in rec.items()}
    return out
