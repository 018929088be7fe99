"""A TCP proxy in front of the real broker that refuses MQTT v5 like amqtt does.

A v5 CONNECT gets a 3.1.1-style CONNACK "unacceptable protocol version" (or, with
``close_only``, just a closed socket); any other connection is piped to the broker.
"""

from __future__ import annotations

import contextlib
import socket
import threading


def _read_connect(conn: socket.socket) -> tuple[bytes, int]:
    """Read the CONNECT packet; returns its bytes and the protocol level."""
    data = conn.recv(1)
    multiplier, length = 1, 0
    while True:  # remaining length, a varint
        byte = conn.recv(1)
        data += byte
        length += (byte[0] & 0x7F) * multiplier
        multiplier *= 128
        if not byte[0] & 0x80:
            break
    body = b""
    while len(body) < length:
        chunk = conn.recv(length - len(body))
        if not chunk:
            break
        body += chunk
    name_len = int.from_bytes(body[:2], "big")
    return data + body, body[2 + name_len]


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class RefuseV5Proxy:
    def __init__(self, upstream_port: int, *, close_only: bool = False) -> None:
        self._upstream = upstream_port
        self._close_only = close_only
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self.levels: list[int] = []
        self._sockets: list[socket.socket] = [self._server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self._sockets.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            packet, level = _read_connect(conn)
        except (OSError, IndexError):
            conn.close()
            return
        self.levels.append(level)
        if level == 5:
            if not self._close_only:
                conn.sendall(b"\x20\x02\x00\x01")
            conn.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self._upstream))
        self._sockets.append(upstream)
        upstream.sendall(packet)
        threading.Thread(target=_pipe, args=(upstream, conn), daemon=True).start()
        _pipe(conn, upstream)

    def close(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
