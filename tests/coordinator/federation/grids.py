"""A Grid base for tests whose devices answer in-process (``send_and_receive`` only)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flwr.app import Message
from flwr.serverapp import Grid


class StubGrid(Grid):
    """Subclasses answer ``get_node_ids`` and ``send_and_receive``; the rest is never called."""

    def set_run(self, run_id: int) -> None: ...

    def create_message(self, *args: object, **kwargs: object) -> Message:
        raise NotImplementedError

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError

    @property
    def run(self) -> Any:
        raise NotImplementedError
