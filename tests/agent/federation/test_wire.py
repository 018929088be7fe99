from __future__ import annotations

import socket
import struct
import threading

import numpy as np
import pytest

from agent.federation import wire


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.settimeout(5)
    b.settimeout(5)
    return a, b


def test_round_trip_keeps_header_dtypes_and_shapes() -> None:
    a, b = _pair()
    arrays = [
        np.arange(6, dtype=np.float32).reshape(2, 3),
        np.array([1, -2], np.int8),
        np.zeros((0, 4)),
    ]
    sender = threading.Thread(target=wire.send, args=(a, {"op": "fit", "round": 3}, arrays))
    sender.start()
    header, got = wire.recv(b)
    sender.join(10)  # before b closes: the empty array's last (empty) chunk may still be going
    assert header == {"op": "fit", "round": 3}
    assert [g.dtype for g in got] == [x.dtype for x in arrays]
    for g, x in zip(got, arrays, strict=True):
        np.testing.assert_array_equal(g, x)


def test_rejects_wrong_magic_and_oversized_frames() -> None:
    a, b = _pair()
    a.sendall(struct.pack("!4sIQ", b"EVIL", 2, 0) + b"{}")
    with pytest.raises(wire.WireError, match="magic"):
        wire.recv(b)
    a, b = _pair()
    a.sendall(struct.pack("!4sIQ", wire.MAGIC, 10, wire.MAX_BODY + 1))
    with pytest.raises(wire.WireError, match="expected a header"):
        wire.recv(b)


def test_rejects_object_arrays_and_truncated_bodies() -> None:
    a, b = _pair()
    with pytest.raises(wire.WireError, match="numeric"):
        wire.send(a, {}, [np.array(["x"], dtype=object)])
    head = b'{"arrays": [{"dtype": "float32", "shape": [4]}]}'
    a.sendall(struct.pack("!4sIQ", wire.MAGIC, len(head), 8) + head + b"\0" * 8)
    with pytest.raises(wire.WireError, match="too short"):
        wire.recv(b)


def test_peer_closing_is_a_wire_error() -> None:
    a, b = _pair()
    a.close()
    with pytest.raises(wire.WireError, match="closed"):
        wire.recv(b)


def test_call_names_the_socket_when_nobody_listens(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(wire.WireError, match="cannot reach the trainer"):
        wire.call(str(tmp_path / "none.sock"), {"op": "ping"}, timeout=1, connect_timeout=1)
