"""sd_notify over a real AF_UNIX datagram socket; a no-op without NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from agent.systemd import Notifier


def test_notify_reaches_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(5)
        n = Notifier(str(path), watchdog_usec=4_000_000)
        assert n.enabled and n.watchdog_s == 4.0
        assert n.notify("READY=1")
        assert server.recv(256) == b"READY=1"
        n.close()


def test_abstract_socket(tmp_path: Path) -> None:
    name = f"orchard-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(5)
        n = Notifier("@" + name)
        assert n.notify("WATCHDOG=1")
        assert server.recv(256) == b"WATCHDOG=1"
        n.close()


def test_disabled_without_socket(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier.from_env()
    assert not n.enabled
    assert n.notify("READY=1") is False


def test_watchdog_for_another_pid_is_ignored(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent")
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert Notifier.from_env().watchdog_s is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Notifier.from_env().watchdog_s == 1.0
