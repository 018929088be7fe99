"""Test helpers: a paho subscriber that records messages, a TCP gate, a raw mosquitto_sub."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.waiting import wait_until

MOSQUITTO_SUB = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"


@dataclass(frozen=True)
class Msg:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


class Collector:
    """An MQTT 3.1.1 subscriber (both brokers speak it) that keeps every message."""

    def __init__(self, port: int, topics: tuple[str, ...] = ("orchard/#",)) -> None:
        self.messages: list[Msg] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._client.connect("127.0.0.1", port, keepalive=10)
        for topic in topics:
            self._client.subscribe(topic, qos=1)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("subscription not acknowledged")

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Msg(msg.topic, bytes(msg.payload), bool(msg.retain)))

    def on(self, suffix: str) -> list[Msg]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def publish(self, topic: str, payload: str) -> None:
        self._client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def retained(port: int, topic: str, timeout: int = 5) -> dict[str, Any] | None:
    """The retained message on ``topic`` (None if none), read by a raw ``mosquitto_sub``."""
    out = subprocess.run(
        [
            MOSQUITTO_SUB,
            "-V",
            "mqttv311",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-t",
            topic,
            "-C",
            "1",
            "-W",
            str(timeout),
            "--retained-only",
        ],
        capture_output=True,
        text=True,
        timeout=timeout + 5,
        check=False,
    )
    if out.returncode not in (0, 27):  # 27: -W timeout
        raise AssertionError(f"mosquitto_sub failed: rc={out.returncode} {out.stderr}")
    if not out.stdout.strip():
        return None
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def retained_status(port: int, topic: str, *, state: str, timeout: float = 10.0) -> dict[str, Any]:
    """Poll (raw ``mosquitto_sub``) until the retained status on ``topic`` has ``state``."""

    def check() -> dict[str, Any] | None:
        status = retained(port, topic)
        return status if status is not None and status["state"] == state else None

    result: dict[str, Any] = wait_until(check, timeout, f"retained status {state!r} on {topic}")
    return result


class Gate:
    """A TCP forwarder to the broker that the test can close (refuse) and open again."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream = upstream_port
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._open = threading.Event()
        self._open.set()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close_gate(self) -> None:
        """Refuse new connections and cut the open ones (the link goes down)."""
        self._open.clear()
        sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def open_gate(self) -> None:
        self._open.set()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            if not self._open.is_set():
                conn.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self._upstream), timeout=2)
            except OSError:
                conn.close()
                continue
            self._sockets += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        for sock in [self._server, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()


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


def fake_pi(root: Path, *, temp_c: float = 48.0, throttled: int = 0) -> Path:
    """A fake board tree: device tree, a CPU thermal zone, the firmware's get_throttled."""
    (root / "proc/device-tree").mkdir(parents=True, exist_ok=True)
    (root / "proc/device-tree/model").write_bytes(b"Raspberry Pi 4 Model B Rev 1.5\x00")
    (root / "proc/device-tree/serial-number").write_bytes(b"10000000abcdef12\x00")
    zone = root / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True, exist_ok=True)
    (zone / "type").write_text("cpu-thermal\n")
    set_temp(root, temp_c)
    firmware = root / "sys/devices/platform/soc/soc:firmware"
    firmware.mkdir(parents=True, exist_ok=True)
    set_throttled(root, throttled)
    return root


def _replace(path: Path, text: str) -> None:
    """Swap the whole file at once: a real sysfs read never sees half a value."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def set_temp(root: Path, temp_c: float) -> None:
    _replace(root / "sys/class/thermal/thermal_zone0/temp", f"{int(temp_c * 1000)}\n")


def set_throttled(root: Path, bits: int) -> None:
    _replace(root / "sys/devices/platform/soc/soc:firmware/get_throttled", f"{bits:x}\n")
