"""Health payloads and a raw paho publisher for the coordinator's health tests."""

from __future__ import annotations

import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.health.schema import (
    Birth,
    Disk,
    Federation,
    Health,
    Inference,
    Memory,
    ModelInfo,
    Status,
    Throttling,
    Topics,
    Training,
)

NO_THROTTLE = Throttling(False, False, False, False, False, False, False, False)


def status(state: str = "ready", session: int = 1, ts: float | None = None) -> Status:
    return Status(state=state, session=session, ts=time.time() if ts is None else ts)  # type: ignore[arg-type]


def birth(device_id: str, interval_s: float = 30.0, ts: float | None = None) -> Birth:
    return Birth(
        device_id=device_id,
        ts=time.time() if ts is None else ts,
        session=1,
        board="Raspberry Pi 4 Model B Rev 1.4",
        health_interval_s=interval_s,
    )


def health(
    seq: int = 1,
    *,
    ts: float | None = None,
    temp: float | None = 50.0,
    available_mb: float = 1500.0,
    throttling: Throttling | None = NO_THROTTLE,
    node_id: int | None = None,
    failures: int = 0,
    version: str = "v1",
    p95: float | None = 0.8,
    cpu_pct: float = 12.0,
) -> Health:
    return Health(
        seq=seq,
        ts=time.time() if ts is None else ts,
        uptime_s=100.0 + seq,
        cpu_pct=cpu_pct,
        load=(0.1, 0.2, 0.3),
        memory=Memory(total_mb=4000.0, available_mb=available_mb, pct=100 - available_mb / 40),
        disk=Disk(free_mb=10_000.0, pct=20.0),
        rss_mb=60.0,
        cpu_temp_c=temp,
        throttling=throttling,
        model=ModelInfo(version=version, sha256="ab" * 32, quantization="int8"),
        inference=Inference(count=10, p50_ms=0.4, p95_ms=p95, errors=0),
        training=Training(state="idle", round=2, failures_in_row=failures),
        federation=Federation(supernode="connected", node_id=node_id),
    )


class Publisher:
    """A raw MQTT 3.1.1 client (both test brokers speak it) publishing QoS 1."""

    def __init__(self, host: str, port: int, *, will: tuple[str, bytes] | None = None) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv311
        )
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.client.reconnect_delay_set(1, 2)
        self.client.connect(host, port, keepalive=5)
        self.client.loop_start()

    def send(
        self, device_id: str, payload: Any, *, fleet: str | None = None, retain: bool = False
    ) -> None:
        kind = type(payload).__name__.lower()
        topic = Topics(device_id, fleet=fleet).topic(kind)
        self.raw(topic, payload.to_json().encode(), retain=retain)

    def raw(self, topic: str, data: bytes, *, retain: bool = False) -> None:
        info = self.client.publish(topic, data, qos=1, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published(), f"publish to {topic} not acknowledged"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
