"""Home Assistant MQTT discovery: one retained config per health field, declared as a table.

Each entity reads the device's ``health`` topic with a value template; availability follows the
``status`` topic (``ready`` and ``alert`` count as available). Configs are published on every
connect and again whenever Home Assistant announces itself (``<prefix>/status`` = ``online``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Final

from agent.health.schema import Topics

BIRTH_PAYLOAD: Final = "online"


@dataclass(frozen=True)
class HaSensor:
    key: str  # object id suffix: <device>_<key>
    name: str
    template: str  # Jinja over the health payload (value_json)
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = "measurement"
    category: str | None = "diagnostic"


SENSORS: Final[tuple[HaSensor, ...]] = (
    HaSensor("cpu_temp_c", "CPU temperature", "{{ value_json.cpu_temp_c }}", "°C", "temperature"),
    HaSensor("cpu_pct", "CPU", "{{ value_json.cpu_pct }}", "%"),
    HaSensor("load_1m", "Load (1 min)", "{{ value_json.load[0] }}"),
    HaSensor("memory_pct", "Memory used", "{{ value_json.memory.pct }}", "%"),
    HaSensor("disk_free_mb", "Disk free", "{{ value_json.disk.free_mb }}", "MB", "data_size"),
    HaSensor("rss_mb", "Agent memory", "{{ value_json.rss_mb }}", "MB", "data_size"),
    HaSensor(
        "throttled",
        "Throttled",
        "{{ (value_json.throttling or {}).get('throttled', false) }}",
        state_class=None,
    ),
    HaSensor(
        "inference_p95_ms", "Inference p95", "{{ value_json.inference.p95_ms }}", "ms", "duration"
    ),
    HaSensor(
        "model_version",
        "Model version",
        "{{ (value_json.model or {}).get('version', 'none') }}",
        state_class=None,
    ),
    HaSensor("training_state", "Training", "{{ value_json.training.state }}", state_class=None),
    HaSensor("outbox_queued", "Outbox queued", "{{ value_json.outbox.queued }}"),
)

_AVAILABLE = "{{ 'ready' if value_json.state in ('ready', 'alert') else value_json.state }}"


def object_id(device_id: str, key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{device_id}_{key}")


def discovery_configs(
    topics: Topics, prefix: str = "homeassistant", *, model: str | None = None
) -> list[tuple[str, str]]:
    """``(topic, retained JSON payload)`` for every entity in ``SENSORS``."""
    device = {
        "identifiers": [f"orchard_{object_id(topics.device_id, 'agent')}"],
        "name": topics.device_id,
        "manufacturer": "Orchard",
        "model": model or "agent",
    }
    out = []
    for sensor in SENSORS:
        oid = object_id(topics.device_id, sensor.key)
        config: dict[str, object] = {
            "name": sensor.name,
            "unique_id": f"orchard_{oid}",
            "state_topic": topics.health,
            "value_template": sensor.template,
            "availability_topic": topics.status,
            "availability_template": _AVAILABLE,
            "payload_available": "ready",
            "device": device,
        }
        optional = {
            "unit_of_measurement": sensor.unit,
            "device_class": sensor.device_class,
            "state_class": sensor.state_class,
            "entity_category": sensor.category,
        }
        config.update({k: v for k, v in optional.items() if v is not None})
        out.append((f"{prefix}/sensor/{oid}/config", json.dumps(config, ensure_ascii=False)))
    return out
