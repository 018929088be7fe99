"""Find sentinel readings in captured bytes, in every encoding a leak could take.

A value is looked for as float64 and float32 bytes (little- and big-endian) and as text: its
``repr``, ``%g``, ``%e``, the shortest float32 text (what ``np.float32`` prints), and the decimal
strings a JSON encoder would print after rounding to 1..6 places. Text matches need a
non-digit on both sides, so ``1013.9`` is not found inside ``21013.95``; text forms with fewer
than five significant digits are not searched (they would match unrelated numbers).

Flower 1.41's SuperNode speaks protobuf over HTTP/1.1 (httpx) to the Fleet API; its gRPC
transport is HTTP/2, where a value can be split by a frame header. So besides the raw stream,
:func:`flower_views` rebuilds every request body (Content-Length or chunked, decoded when
``Content-Encoding`` says gzip/deflate) or, for HTTP/2, each stream's DATA and the gRPC
messages in it plus the HPACK header blocks, so a value split on the way is still found.
"""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, CONTINUATION = 0x0, 0x1, 0x9
PADDED, PRIORITY = 0x8, 0x20


@dataclass(frozen=True)
class Hit:
    value: float
    encoding: str
    where: str
    offset: int


def binary_forms(value: float) -> dict[str, bytes]:
    return {
        "float64-le": struct.pack("<d", value),
        "float64-be": struct.pack(">d", value),
        "float32-le": struct.pack("<f", value),
        "float32-be": struct.pack(">f", value),
    }


def text_forms(value: float) -> dict[str, str]:
    forms = {
        "repr": repr(float(value)),
        "%g": f"{value:g}",
        "%e": f"{value:e}",
        "float32": str(np.float32(value)),
    }
    for places in range(1, 7):
        forms[f"round{places}"] = repr(round(float(value), places))
    return {k: v for k, v in forms.items() if sum(c.isdigit() for c in v) >= 5}


def find(blob: bytes, values: list[float], where: str) -> list[Hit]:
    hits = []
    for value in values:
        for name, pattern in binary_forms(value).items():
            start = blob.find(pattern)
            if start >= 0:
                hits.append(Hit(value, name, where, start))
        for name, text in text_forms(value).items():
            rx = re.compile(rb"(?<![0-9.])" + re.escape(text.encode()) + rb"(?![0-9])")
            match = rx.search(blob)
            if match:
                hits.append(Hit(value, f"text:{name}={text}", where, match.start()))
    return hits


# -- HTTP/2 + gRPC -------------------------------------------------------------------------
def connections(stream: bytes) -> list[bytes]:
    """Client->server bytes of each HTTP/2 connection (each starts with the preface)."""
    return [PREFACE + part for part in stream.split(PREFACE)[1:]]


def _frames(conn: bytes) -> list[tuple[int, int, int, bytes]]:
    out, pos = [], len(PREFACE)
    while pos + 9 <= len(conn):
        length = int.from_bytes(conn[pos : pos + 3], "big")
        kind, flags = conn[pos + 3], conn[pos + 4]
        stream_id = int.from_bytes(conn[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
        payload = conn[pos + 9 : pos + 9 + length]
        if len(payload) < length:
            break  # the capture ended mid-frame
        out.append((kind, flags, stream_id, payload))
        pos += 9 + length
    return out


def _unpad(flags: int, payload: bytes, kind: int) -> bytes:
    if flags & PADDED:
        pad = payload[0]
        payload = payload[1 : len(payload) - pad]
    if kind == HEADERS and flags & PRIORITY:
        payload = payload[5:]
    return payload


def header_blocks(conn: bytes) -> bytes:
    return b"".join(
        _unpad(flags, payload, kind)
        for kind, flags, _, payload in _frames(conn)
        if kind in (HEADERS, CONTINUATION)
    )


def grpc_messages(conn: bytes) -> list[bytes]:
    """Every gRPC message the client sent on this connection, reassembled and decompressed."""
    streams: dict[int, bytearray] = defaultdict(bytearray)
    for kind, flags, stream_id, payload in _frames(conn):
        if kind == DATA:
            streams[stream_id] += _unpad(flags, payload, kind)
    out = []
    for data in streams.values():
        pos = 0
        while pos + 5 <= len(data):
            compressed, length = data[pos], int.from_bytes(data[pos + 1 : pos + 5], "big")
            body = bytes(data[pos + 5 : pos + 5 + length])
            out.append(_decompress(body) if compressed else body)
            pos += 5 + length
    return out


def _decompress(body: bytes) -> bytes:
    for fn in (gzip.decompress, zlib.decompress, lambda b: zlib.decompress(b, -15)):
        try:
            return fn(body)
        except (OSError, zlib.error):
            continue
    raise AssertionError(f"a compressed body of {len(body)} bytes could not be read")


# -- HTTP/1.1 ------------------------------------------------------------------------------
def http1_bodies(stream: bytes) -> list[bytes]:
    """Every request body in a client->server HTTP/1.1 byte stream, de-chunked and decoded."""
    out, pos = [], 0
    while True:
        end = stream.find(b"\r\n\r\n", pos)
        if end < 0:
            return out
        lines = stream[pos:end].split(b"\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])
        }
        pos = end + 4
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            body, pos = _dechunk(stream, pos)
        else:
            length = int(headers.get(b"content-length", b"0"))
            body, pos = stream[pos : pos + length], pos + length
        encoding = headers.get(b"content-encoding", b"identity").lower()
        out.append(_decompress(body) if encoding in (b"gzip", b"deflate") else body)


def _dechunk(stream: bytes, pos: int) -> tuple[bytes, int]:
    body = bytearray()
    while True:
        eol = stream.find(b"\r\n", pos)
        if eol < 0:
            return bytes(body), len(stream)
        size = int(stream[pos:eol].split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            trailer = stream.find(b"\r\n\r\n", pos - 2)
            return bytes(body), len(stream) if trailer < 0 else trailer + 4
        body += stream[pos : pos + size]
        pos += size + 2


def flower_views(stream: bytes) -> list[tuple[str, bytes]]:
    """What to search in a Flower capture: the raw bytes and every rebuilt message body."""
    views = [("flower raw stream", stream)]
    if PREFACE not in stream:
        bodies = http1_bodies(stream)
        return views + [(f"flower request body {i}", b) for i, b in enumerate(bodies)]
    for i, conn in enumerate(connections(stream)):
        views.append((f"flower connection {i} headers", header_blocks(conn)))
        messages = grpc_messages(conn)
        views += [(f"flower connection {i} message {j}", m) for j, m in enumerate(messages)]
    return views
