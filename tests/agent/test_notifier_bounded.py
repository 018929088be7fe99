"""sd_notify never stops the agent: a notify socket whose reader stalls is given up on."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from agent.systemd import SEND_TIMEOUT_S, Notifier


def test_a_stalled_notify_socket_costs_a_bounded_wait(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    reader = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    reader.bind(str(path))  # never read: its queue fills after a few datagrams
    notifier = Notifier(str(path))
    try:
        sent = 0
        while notifier.notify(f"STATUS=message {sent}"):  # until the reader's queue is full
            sent += 1
            assert sent < 10_000
        assert sent > 0
        started = time.monotonic()
        assert notifier.notify("STOPPING=1") is False  # dropped, not blocking
        assert time.monotonic() - started < SEND_TIMEOUT_S * 3
        reader.recv(4096)  # one read makes room again
        assert notifier.notify("STOPPING=1") is True
    finally:
        notifier.close()
        reader.close()
