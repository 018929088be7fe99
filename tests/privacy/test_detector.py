"""The wire test's detector finds a value however it was cut or encoded, and only then."""

from __future__ import annotations

import gzip
import struct

from tests.privacy import wire

VALUE = 1234.5673828125  # exact in float32


def _found(blob: bytes, value: float = VALUE) -> set[str]:
    return {hit.encoding for hit in wire.find(blob, [value], "test")}


def test_every_binary_encoding_is_found() -> None:
    for name, pattern in wire.binary_forms(VALUE).items():
        assert name in _found(b"\x00junk" + pattern + b"junk")
    assert _found(b"\x00" * 64) == set()


def test_text_is_found_as_printed_but_not_inside_other_numbers() -> None:
    assert "text:repr=1234.5673828125" in _found(b'{"co2": 1234.5673828125}')
    assert "text:%g=1234.57" in _found(b"co2=1234.57;")
    assert "text:round1=1234.6" in _found(b"[1234.6, 2]")
    assert "text:%e=1.234567e+03" in _found(b"x 1.234567e+03")
    assert _found(b"uptime 91234.57 s") == set()  # a longer number, not the sentinel
    assert _found(b"1234.571") == set()
    assert "round1" not in wire.text_forms(21.8671875)  # "21.9": too short to mean anything


def test_a_value_split_by_http1_chunking_or_gzip_is_found_in_the_bodies() -> None:
    payload = b"\x0a\x10" + struct.pack("<f", VALUE) + b"tail"
    cut = 4
    chunked = (
        b"POST /v1/push HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{cut:x}\r\n".encode()
        + payload[:cut]
        + b"\r\n"
        + f"{len(payload) - cut:x}\r\n".encode()
        + payload[cut:]
        + b"\r\n0\r\n\r\n"
    )
    zipped = gzip.compress(payload)
    compressed = (
        b"POST /v1/push HTTP/1.1\r\nContent-Encoding: gzip\r\n"
        + f"Content-Length: {len(zipped)}\r\n\r\n".encode()
        + zipped
    )
    stream = chunked + compressed
    assert _found(stream) == set()  # neither is visible in the raw bytes
    views = wire.flower_views(stream)
    assert [where for where, blob in views if "float32-le" in _found(blob)] == [
        "flower request body 0",
        "flower request body 1",
    ]


def test_a_value_split_across_http2_frames_is_found_in_the_grpc_message() -> None:
    body = b"\x12\x08" + struct.pack("<d", VALUE)
    message = b"\x00" + len(body).to_bytes(4, "big") + body

    def frame(kind: int, payload: bytes, stream_id: int = 1) -> bytes:
        head = len(payload).to_bytes(3, "big") + bytes([kind, 0]) + stream_id.to_bytes(4, "big")
        return head + payload

    conn = (
        wire.PREFACE
        + frame(wire.HEADERS, b"\x83\x86")
        + frame(wire.DATA, message[:9])
        + frame(wire.DATA, message[9:])
    )
    assert _found(conn) == set()
    views = dict(wire.flower_views(conn))
    assert "float64-le" in _found(views["flower connection 0 message 0"])
