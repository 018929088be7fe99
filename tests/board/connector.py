"""One board connection to one host port: what QEMU's ``guestfwd=...-cmd:`` runs per connection.

``python connector.py 127.0.0.1 PORT``: QEMU hands the board's TCP stream over on stdin/stdout
(a socket); this connects to 127.0.0.1:PORT and relays both ways until both sides closed.
The target host must be 127.0.0.1 (the board-in-a-box network rule). A ``-tcp:`` chardev
guestfwd instead opens one host connection for QEMU's whole lifetime, so a board that
reconnects (MQTT after a broker restart, gRPC) would talk into a stale stream.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "127.0.0.1":
        sys.stderr.write("usage: connector.py 127.0.0.1 PORT\n")
        return 2
    try:
        upstream = socket.create_connection(("127.0.0.1", int(argv[1])), timeout=10)
    except OSError:
        return 1  # QEMU closes the board's connection: it sees a refused/reset connect
    upstream.settimeout(None)
    board = socket.socket(fileno=os.dup(0))
    open_from_board = open_from_host = True
    while open_from_board or open_from_host:
        wanted = [
            s for s, is_open in ((board, open_from_board), (upstream, open_from_host)) if is_open
        ]
        readable, _, _ = select.select(wanted, [], [])
        for src in readable:
            dst = upstream if src is board else board
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if data:
                try:
                    dst.sendall(data)
                    continue
                except OSError:
                    return 0
            if src is board:
                open_from_board = False
            else:
                open_from_host = False
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
