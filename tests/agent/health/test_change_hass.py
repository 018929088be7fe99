"""Significant-change buckets, degraded reasons, and the Home Assistant discovery table."""

from __future__ import annotations

import dataclasses
import json

from agent.health.change import Buckets, degraded, signature
from agent.health.facts import decode_throttled
from agent.health.hass import SENSORS, discovery_configs
from agent.health.schema import Federation, Memory, Sensors, Topics
from tests.agent.health.test_schema import make_health

B = Buckets()


def test_moves_within_a_bucket_are_not_significant() -> None:
    base = make_health(cpu_pct=21.0, cpu_temp_c=50.5)
    same = make_health(cpu_pct=39.0, cpu_temp_c=54.9)
    assert signature(base, B) == signature(same, B)


def test_crossing_a_bucket_is_significant() -> None:
    base = signature(make_health(cpu_pct=21.0, cpu_temp_c=50.5), B)
    assert signature(make_health(cpu_pct=41.0, cpu_temp_c=50.5), B) != base  # CPU 20 %
    assert signature(make_health(cpu_pct=21.0, cpu_temp_c=55.0), B) != base  # 5 °C
    memory = Memory(total_mb=3800.0, available_mb=2000.0, pct=47.0)  # 23.7 % -> 47 %
    assert signature(make_health(cpu_pct=21.0, cpu_temp_c=50.5, memory=memory), B) != base


def test_discrete_changes_are_significant() -> None:
    base = make_health()
    assert signature(base, B) != signature(make_health(throttling=decode_throttled(0x4)), B)
    assert signature(base, B) != signature(make_health(model=None), B)
    fed = dataclasses.replace(base, federation=Federation(supernode="connected"))
    assert signature(base, B) != signature(fed, B)


def test_custom_buckets() -> None:
    coarse = Buckets(cpu_pct=50.0, temp_c=20.0, mem_pct=50.0)
    assert signature(make_health(cpu_pct=1.0), coarse) == signature(
        make_health(cpu_pct=45.0), coarse
    )


def test_degraded_reasons() -> None:
    assert degraded(make_health(), alert_temp_c=80.0) == ()
    assert degraded(make_health(cpu_temp_c=81.0), alert_temp_c=80.0) == ("hot",)
    assert degraded(make_health(throttling=decode_throttled(0x5)), 80.0) == (
        "under_voltage",
        "throttled",
    )
    failed = make_health(sensors=Sensors(rate_hz=0.1, rejected=0, failed=("room",)))
    assert degraded(failed, 80.0) == ("sensor_failed",)
    past_only = make_health(throttling=decode_throttled(0x70000))
    assert degraded(past_only, 80.0) == ()  # occurred-since-boot is reported, not alerted


def test_discovery_configs_point_at_health_and_status() -> None:
    topics = Topics("pi.1", fleet="barn")
    configs = discovery_configs(topics, model="Raspberry Pi 4")
    assert len(configs) == len(SENSORS)
    topic, payload = configs[0]
    assert topic == f"homeassistant/sensor/pi_1_{SENSORS[0].key}/config"
    config = json.loads(payload)
    assert config["state_topic"] == topics.health
    assert config["availability_topic"] == topics.status
    assert config["payload_available"] == "ready"
    assert config["unique_id"] == f"orchard_pi_1_{SENSORS[0].key}"
    assert config["device"]["model"] == "Raspberry Pi 4"
    assert len({t for t, _ in configs}) == len(configs)  # one topic per entity
