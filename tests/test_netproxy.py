"""The test relay itself: it passes and records bytes, cuts, black-holes and restores."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.netproxy import TcpProxy


@pytest.fixture
def echo() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data.upper())

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    server.close()


def _roundtrip(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(data)
        return conn.recv(1024)


def test_relays_records_cuts_and_restores(echo: int) -> None:
    with TcpProxy(("127.0.0.1", echo)) as proxy:
        assert _roundtrip(proxy.port, b"hello") == b"HELLO"
        assert proxy.sent() == b"hello" and proxy.received() == b"HELLO"

        live = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        live.sendall(b"a")
        assert live.recv(16) == b"A"
        proxy.cut()
        assert live.recv(16) == b""  # the client sees the link close
        live.close()
        refused = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        assert refused.recv(16) == b""  # and new connections are turned away
        refused.close()

        proxy.restore()
        assert _roundtrip(proxy.port, b"again") == b"AGAIN"


def test_blackhole_holds_traffic_until_restored(echo: int) -> None:
    with TcpProxy(("127.0.0.1", echo)) as proxy:
        conn = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        conn.sendall(b"x")
        assert conn.recv(16) == b"X"
        proxy.blackhole()
        conn.sendall(b"y")
        conn.settimeout(0.3)
        with pytest.raises(TimeoutError):
            conn.recv(16)
        proxy.restore()
        conn.settimeout(5)
        assert conn.recv(16) == b"Y"
        conn.close()
