"""Publish each device's desired model, retained, over the health ingest's MQTT connection."""

from __future__ import annotations

import logging

from agent.delivery.desired import Desired
from agent.health.schema import DEFAULT_PREFIX, Topics
from coordinator.health.ingest import HealthIngest

logger = logging.getLogger(__name__)


class MqttPublisher:
    """``publish(device_id, fleet, desired)`` -> retained on ``Topics(...).desired``.

    The ingest republishes every retained message after each reconnection, so a broker restart
    does not lose a desired state.
    """

    def __init__(self, ingest: HealthIngest, prefix: str = DEFAULT_PREFIX) -> None:
        self.ingest = ingest
        self.prefix = prefix

    def publish(self, device_id: str, fleet: str | None, desired: Desired) -> None:
        topic = Topics(device_id, fleet, self.prefix).desired
        version = desired.model.version if desired.model else None
        logger.info("desired %s -> %s (seq %d)", device_id, version, desired.seq)
        self.ingest.publish_retained(topic, desired.to_json())
