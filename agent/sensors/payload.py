"""Pulling numbers out of the JSON that Tasmota, Zigbee2MQTT, ESPHome and friends publish.

A field path is dot-separated keys, with integers as list indexes: ``AM2301.Temperature``,
``sensors.0.value``. An empty path means the payload itself (``"21.5"``).
"""

from __future__ import annotations

import json
from typing import Any

MISSING = object()


def parse(payload: bytes) -> Any:
    """Decode a message body; raises ``ValueError`` for anything that is not JSON."""
    return json.loads(payload.decode("utf-8"))


def lookup(document: Any, path: str) -> Any:
    """The value at ``path`` in ``document``, or :data:`MISSING`."""
    node = document
    for part in path.split(".") if path else ():
        if isinstance(node, dict):
            if part not in node:
                return MISSING
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(node) <= index < len(node):
                return MISSING
            node = node[index]
        else:
            return MISSING
    return node


def as_number(value: Any) -> float | None:
    """A float from a JSON number or numeric string; None for anything else.

    NaN and infinities pass through: the validator counts them under their own reasons.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number
