"""MQTT topic names: ``<prefix>[/<fleet>]/<device_id>/<kind>`` (docs/architecture.md, MQTT health).

>>> Topics("pi-1").health
'orchard/v1/pi-1/health'
>>> Topics("pi-1", fleet="barn").status
'orchard/v1/barn/pi-1/status'
>>> parse_topic("orchard/v1/barn/pi-1/status")
TopicParts(fleet='barn', device_id='pi-1', kind='status')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple, cast

from agent.health.codec import SchemaError

Kind = Literal["status", "birth", "health", "event", "ack"]
KINDS: Final[tuple[Kind, ...]] = ("status", "birth", "health", "event", "ack")
# Topics the coordinator publishes to a device (downlink); the ingest skips them.
#   desired  retained: the model the device should serve (agent.delivery.desired.Desired)
#   command  retained: a signed configuration patch (agent.remote.command.Command)
DOWNLINK_KINDS: Final[tuple[str, ...]] = ("desired", "command")
DEFAULT_PREFIX: Final = "orchard/v1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")  # same rule as agent.toml device_id


def check_name(field: str, value: object) -> str:
    """A device id or fleet name usable as one topic level, else ``SchemaError``."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise SchemaError(field, value, "1-63 letters, digits, '.', '_' or '-' (no '/', '+', '#')")
    return value


def _check_prefix(prefix: str) -> str:
    levels = prefix.split("/")
    if not prefix or any(not level or level in ("+", "#") for level in levels):
        raise SchemaError("topic_prefix", prefix, "non-empty levels without wildcards")
    return prefix


class TopicParts(NamedTuple):
    """``fleet, device_id, kind = parse_topic(topic)``."""

    fleet: str | None
    device_id: str
    kind: Kind


@dataclass(frozen=True)
class Topics:
    """Every topic one device publishes to."""

    device_id: str
    fleet: str | None = None
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        check_name("device_id", self.device_id)
        if self.fleet is not None:
            check_name("fleet", self.fleet)
        _check_prefix(self.prefix)

    @property
    def base(self) -> str:
        fleet = f"{self.fleet}/" if self.fleet else ""
        return f"{self.prefix}/{fleet}{self.device_id}"

    def topic(self, kind: Kind) -> str:
        return f"{self.base}/{kind}"

    @property
    def status(self) -> str:
        return self.topic("status")

    @property
    def birth(self) -> str:
        return self.topic("birth")

    @property
    def health(self) -> str:
        return self.topic("health")

    @property
    def event(self) -> str:
        return self.topic("event")

    @property
    def ack(self) -> str:
        """The agent's answer to a command (``Ack``)."""
        return self.topic("ack")

    @property
    def command(self) -> str:
        """Downlink, retained: a signed command for this device."""
        return f"{self.base}/command"

    @property
    def desired(self) -> str:
        """Downlink, retained: the model this device should serve."""
        return f"{self.base}/desired"


def is_downlink(topic: str) -> bool:
    """Whether ``topic`` is one the coordinator publishes to a device (not health)."""
    return topic.rsplit("/", 1)[-1] in DOWNLINK_KINDS


def subscriptions(prefix: str = DEFAULT_PREFIX) -> tuple[str, str]:
    """Filters that match every device's topics, with and without a fleet level."""
    _check_prefix(prefix)
    return (f"{prefix}/+/+", f"{prefix}/+/+/+")


def parse_topic(topic: str, prefix: str = DEFAULT_PREFIX) -> TopicParts:
    """Split an incoming topic into fleet, device and kind; ``SchemaError`` when it is not ours."""
    _check_prefix(prefix)
    if not topic.startswith(prefix + "/"):
        raise SchemaError("topic", topic, f"a topic under {prefix}/")
    levels = topic[len(prefix) + 1 :].split("/")
    if len(levels) not in (2, 3):
        raise SchemaError("topic", topic, f"{prefix}/[<fleet>/]<device_id>/<kind>")
    kind = levels[-1]
    if kind not in KINDS:
        raise SchemaError("topic.kind", kind, f"one of {', '.join(KINDS)}")
    fleet = check_name("topic.fleet", levels[0]) if len(levels) == 3 else None
    device_id = check_name("topic.device_id", levels[-2])
    return TopicParts(fleet=fleet, device_id=device_id, kind=cast(Kind, kind))
