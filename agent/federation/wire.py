"""Frames between the thin ClientApp and the trainer over a local (unix) socket.

A frame is ``MAGIC | u32 header length | u64 body length | header JSON | body``. The header is a
JSON object; its ``"arrays"`` entry (added here) lists ``{"dtype", "shape"}`` for each array,
whose raw C-order bytes follow one after another in the body. No pickle: a frame can only carry
JSON and plain numeric arrays, which is all that crosses this boundary.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agent.errors import AgentError

MAGIC = b"ORW1"
_PREFIX = struct.Struct("!4sIQ")
MAX_HEADER = 1 << 20
MAX_BODY = 512 << 20
_DTYPES = frozenset({"float16", "float32", "float64", "int8", "uint8", "int32", "int64", "bool"})


class WireError(AgentError):
    """A frame could not be sent or read (peer gone, timeout, malformed frame)."""


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        try:
            k = sock.recv_into(view[got:], n - got)
        except TimeoutError as exc:
            raise WireError(f"timed out waiting for {n - got} more bytes") from exc
        except OSError as exc:
            raise WireError(f"connection failed: {exc}") from exc
        if k == 0:
            raise WireError("the peer closed the connection")
        got += k
    return bytes(buf)


def send(sock: socket.socket, header: Mapping[str, Any], arrays: Sequence[np.ndarray] = ()) -> int:
    """Send one frame; returns the bytes written."""
    metas, chunks = [], []
    for a in arrays:
        a = np.ascontiguousarray(a)
        if a.dtype.name not in _DTYPES:
            raise WireError(f"expected a numeric array. Received: dtype={a.dtype}")
        metas.append({"dtype": a.dtype.name, "shape": list(a.shape)})
        chunks.append(a.tobytes())
    head = json.dumps({**header, "arrays": metas}, allow_nan=True).encode()
    body_len = sum(len(c) for c in chunks)
    try:
        sock.sendall(_PREFIX.pack(MAGIC, len(head), body_len) + head)
        for chunk in chunks:
            sock.sendall(chunk)
    except OSError as exc:
        raise WireError(f"could not send: {exc}") from exc
    return _PREFIX.size + len(head) + body_len


def recv(sock: socket.socket) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Read one frame: ``(header, arrays)``; raises ``WireError`` on anything malformed."""
    magic, head_len, body_len = _PREFIX.unpack(_recv_exact(sock, _PREFIX.size))
    if magic != MAGIC:
        raise WireError(f"expected frame magic {MAGIC!r}. Received: {magic!r}")
    if head_len > MAX_HEADER or body_len > MAX_BODY:
        raise WireError(
            f"expected a header <= {MAX_HEADER} and body <= {MAX_BODY} bytes. "
            f"Received: header={head_len}, body={body_len}"
        )
    try:
        header = json.loads(_recv_exact(sock, head_len))
    except ValueError as exc:
        raise WireError(f"expected a JSON header. Received: {exc}") from exc
    if not isinstance(header, dict):
        raise WireError(f"expected a JSON object header. Received: {type(header).__name__}")
    body = _recv_exact(sock, body_len) if body_len else b""
    arrays: list[np.ndarray] = []
    offset = 0
    for meta in header.pop("arrays", []):
        dtype = str(meta.get("dtype"))
        if dtype not in _DTYPES:
            raise WireError(f"expected a numeric dtype. Received: dtype={dtype!r}")
        shape = tuple(int(d) for d in meta.get("shape", ()))
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        size = count * np.dtype(dtype).itemsize
        if offset + size > len(body):
            raise WireError(f"frame body too short for array of shape {shape} ({dtype})")
        arrays.append(np.frombuffer(body, dtype, count, offset).reshape(shape).copy())
        offset += size
    if offset != len(body):
        raise WireError(f"frame body has {len(body) - offset} trailing bytes")
    return header, arrays


def call(
    path: str,
    header: Mapping[str, Any],
    arrays: Sequence[np.ndarray] = (),
    *,
    timeout: float,
    connect_timeout: float = 30.0,
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Connect to the trainer at ``path``, send one request and wait for its reply."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(connect_timeout)
        try:
            sock.connect(path)
        except OSError as exc:
            raise WireError(f"cannot reach the trainer at {path}: {exc}") from exc
        sock.settimeout(timeout)
        send(sock, header, arrays)
        return recv(sock)
    finally:
        sock.close()
