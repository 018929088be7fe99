"""The ``[labels]`` table of ``agent.toml``::

    [labels]
    max_per_minute = 120        # labels accepted per minute (HTTP and MQTT together); a burst
                                # may use a whole minute's worth at once, then 429 Retry-After
    match_tolerance_s = 30.0    # {"timestamp": t, ...} labels the newest reading in [t - 30 s, t]
    # mqtt_topic = "home/kitchen-pi/labels"   # optional: labels from another local system
    path = "/var/lib/orchard/predictions.db"  # the prediction log (default under state_dir)
    max_predictions = 50000     # the log keeps at most this many predictions
    max_age_s = 1209600         # and none older than 14 days

``mqtt_topic`` must lie outside ``[mqtt] topic_prefix`` (checked in ``agent.config``): the
coordinator ingests every topic under the prefix, and raw labels never leave the board.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import ConfigError
from agent.options import Options, combine

PREFIX = "labels"
MAX_TOPIC = 256


@dataclass(frozen=True)
class LabelSettings:
    """``path=None`` keeps the prediction log in memory (a memory store, tests)."""

    path: Path | None = None
    max_per_minute: int = 120
    match_tolerance_s: float = 30.0
    mqtt_topic: str | None = None
    max_predictions: int = 50_000
    max_age_s: float = 14 * 86400.0

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise combine(problems)

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], state_dir: Path) -> LabelSettings:
        """Build from ``[labels]``; one :class:`ConfigError` names every wrong key."""
        o = Options(PREFIX, table, collect=True)
        topic = o.optional_str("mqtt_topic")
        for problem in _problems_of_topic(topic):
            o.record(problem)
            topic = None
        settings = cls(
            path=Path(o.get_str("path", str(state_dir / "predictions.db"))),
            max_per_minute=o.get_int("max_per_minute", cls.max_per_minute, low=1, high=60_000),
            match_tolerance_s=o.get_float(
                "match_tolerance_s", cls.match_tolerance_s, low=0.0, high=86_400.0
            ),
            mqtt_topic=topic,
            max_predictions=o.get_int(
                "max_predictions", cls.max_predictions, low=100, high=10_000_000
            ),
            max_age_s=o.get_float("max_age_s", cls.max_age_s, positive=True),
        )
        o.done()
        return settings


def _problems(s: LabelSettings) -> list[ConfigError]:
    problems: list[ConfigError] = []
    if s.path is not None and not (isinstance(s.path, str | Path) and str(s.path)):
        problems.append(ConfigError(f"{PREFIX}.path", s.path, "a file path"))
    if not _int_in(s.max_per_minute, 1, 60_000):
        problems.append(
            ConfigError(f"{PREFIX}.max_per_minute", s.max_per_minute, "an integer in [1, 60000]")
        )
    if not _number_in(s.match_tolerance_s, 0.0, 86_400.0):
        problems.append(
            ConfigError(
                f"{PREFIX}.match_tolerance_s", s.match_tolerance_s, "a number in [0, 86400]"
            )
        )
    problems.extend(_problems_of_topic(s.mqtt_topic))
    if not _int_in(s.max_predictions, 100, 10_000_000):
        problems.append(
            ConfigError(
                f"{PREFIX}.max_predictions", s.max_predictions, "an integer in [100, 10000000]"
            )
        )
    if not _number_in(s.max_age_s, 0.0, math.inf) or s.max_age_s <= 0:
        problems.append(ConfigError(f"{PREFIX}.max_age_s", s.max_age_s, "a positive number"))
    return problems


def _problems_of_topic(topic: Any) -> list[ConfigError]:
    if topic is None:
        return []
    expected = (
        f"a topic name of at most {MAX_TOPIC} characters without wildcards (+, #), "
        "empty levels or a leading $"
    )
    ok = isinstance(topic, str) and 0 < len(topic) <= MAX_TOPIC
    if ok:
        ok = not any(c in topic for c in "+#\0") and not topic.startswith("$")
        ok = ok and all(topic.split("/"))
    return [] if ok else [ConfigError(f"{PREFIX}.mqtt_topic", topic, expected)]


def _int_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _number_in(value: Any, low: float, high: float) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and math.isfinite(value) and low <= value <= high
