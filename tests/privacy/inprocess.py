"""An in-process stand-in for the network between a ServerApp and its devices' ClientApps.

Messages are deep-copied on the way (each node gets its own, as after serialisation), Flower's
task identity is set to the receiving node while its chain runs (as in its ClientApp process),
and an exception in a chain becomes an error reply (as Flower's runtime does). Only the
network is simulated; the server and client code on either side is the real one.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any

from flwr.app import Context, Error, Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

Handler = Callable[[Message, Context], Message]
RUN_ID = 7


class InProcessGrid(Grid):
    """Hands each message to its node's ClientApp train chain; keeps what the server got."""

    def __init__(self, chains: dict[int, Handler], run_config: dict[str, Any]) -> None:
        self.chains = chains
        self.contexts = {n: self._context(n, run_config) for n in chains}
        self.received: list[Message] = []
        self.phase: dict[str, Any] = {}

    @staticmethod
    def _context(node: int, run_config: dict[str, Any]) -> Context:
        return Context(
            run_id=RUN_ID,
            node_id=node,
            node_config={},
            state=RecordDict(),
            run_config=dict(run_config),
        )

    @property
    def run(self) -> Any:
        return SimpleNamespace(run_id=RUN_ID)

    def set_run(self, run: Any) -> None:
        pass

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        raise NotImplementedError

    def get_node_ids(self) -> Iterable[int]:
        return list(self.chains)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        replies = []
        for msg in messages:
            node = msg.metadata.dst_node_id
            TaskIdentity.node_id = node  # as the node's ClientApp process would have it
            delivered = copy.deepcopy(msg)  # the wire: each node gets its own copy
            try:
                reply = self.chains[node](delivered, self.contexts[node])
            except Exception as exc:  # Flower's runtime turns a ClientApp exception into this
                reply = Message(Error(code=1, reason=str(exc)), reply_to=delivered)
            TaskIdentity.node_id = 0
            replies.append(copy.deepcopy(reply))
        self.received += replies
        return replies
