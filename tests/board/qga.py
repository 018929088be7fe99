"""A minimal client for the QEMU guest agent (``qemu-ga`` on the board, a virtio-serial port).

The host runs commands on the emulated board through it without any network: ``guest-exec``
with captured output, ``input-data`` for stdin. JSON lines over a unix socket that QEMU
serves; ``guest-sync-delimited`` resynchronises after a reconnect or a reboot.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class GuestAgentError(RuntimeError):
    pass


@dataclass(frozen=True)
class Result:
    command: str
    rc: int
    out: str
    err: str

    def check(self) -> Result:
        if self.rc != 0:
            raise GuestAgentError(f"`{self.command}` exited {self.rc}: {self.err or self.out}")
        return self


class GuestAgent:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._ids = itertools.count(random.randrange(1, 1 << 30))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock, self._buffer = None, b""

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.path))
            except OSError:
                sock.close()
                raise
            self._sock, self._buffer = sock, b""
        return self._sock

    def _send(self, payload: dict[str, Any], prefix: bytes = b"") -> None:
        self._connect().sendall(prefix + json.dumps(payload).encode() + b"\n")

    def _read_line(self, deadline: float) -> bytes:
        sock = self._connect()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from the guest agent")
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                raise TimeoutError("no answer from the guest agent") from None
            if not data:
                self.close()
                raise ConnectionError("guest agent socket closed")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def sync(self, timeout: float = 5.0) -> None:
        """Resynchronise: flush the guest's parser and drop stale replies."""
        ident = next(self._ids)
        self._buffer = b""
        self._send({"execute": "guest-sync-delimited", "arguments": {"id": ident}}, b"\xff")
        deadline = time.monotonic() + timeout
        while True:
            line = self._read_line(deadline)
            if b"\xff" in line:
                line = line.rsplit(b"\xff", 1)[1]
            try:
                reply = json.loads(line)
            except ValueError:
                continue
            if isinstance(reply, dict) and reply.get("return") == ident:
                return

    def call(self, command: str, timeout: float = 10.0, **arguments: Any) -> Any:
        payload: dict[str, Any] = {"execute": command}
        if arguments:
            payload["arguments"] = arguments
        self._send(payload)
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self._read_line(deadline))
            if "error" in reply:
                raise GuestAgentError(f"{command}: {reply['error']}")
            if "return" in reply:
                return reply["return"]

    def shutdown(self, mode: str = "powerdown") -> None:
        """``guest-shutdown`` (powerdown | reboot | halt): it never answers on success."""
        self.sync()
        self._send({"execute": "guest-shutdown", "arguments": {"mode": mode}})

    def wait_up(self, timeout: float, alive: Any = None) -> float:
        """Block until the guest agent answers (``alive()`` turning False aborts)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if alive is not None and not alive():
                raise GuestAgentError("QEMU exited before the guest agent answered")
            try:
                self.sync(timeout=3.0)
                return time.monotonic()
            except (OSError, TimeoutError, ConnectionError):
                self.close()
                time.sleep(1.0)
        raise TimeoutError(f"the guest agent did not answer within {timeout:.0f} s")

    def exec(self, command: str, timeout: float = 120.0, stdin: bytes | None = None) -> Result:
        """Run ``sh -c command`` as root on the board; wait for it (bounded)."""
        args: dict[str, Any] = {"path": "/bin/sh", "arg": ["-c", command], "capture-output": True}
        if stdin is not None:
            args["input-data"] = base64.b64encode(stdin).decode()
        self.sync()
        pid = self.call("guest-exec", **args)["pid"]
        deadline = time.monotonic() + timeout
        while True:
            status = self.call("guest-exec-status", pid=pid)
            if status.get("exited"):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"`{command}` still running after {timeout:.0f} s")
            time.sleep(0.2)
        out = base64.b64decode(status.get("out-data", "")).decode(errors="replace")
        err = base64.b64decode(status.get("err-data", "")).decode(errors="replace")
        rc = status.get("exitcode", -status.get("signal", 1))
        return Result(command, int(rc), out, err)

    def sh(self, command: str, timeout: float = 120.0) -> str:
        """``exec`` that must succeed; returns stdout."""
        return self.exec(command, timeout).check().out
