"""The ``[sensors.<name>]`` tables of ``agent.toml``, turned into configured drivers.

Each table names its driver and may set the keys the sampler uses; every other key is the
driver's own option::

    [sensors.room]
    driver = "bme280"
    interval_s = 5.0       # how often to read, default 5
    timeout_s = 2.0        # a read taking longer counts as an error, default 2
    max_age_s = 60.0       # older readings are stale, default 60
    ranges = {temp_c = [-10, 45]}   # narrow (or widen) the driver's plausible ranges
    enabled = true
    address = 0x76         # bme280 option
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.errors import ConfigError
from agent.options import Options, combine, flatten
from agent.sensors import registry
from agent.sensors.base import Clock, SensorDriver

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
COMMON_KEYS = frozenset({"driver", "interval_s", "timeout_s", "max_age_s", "ranges", "enabled"})


@dataclass(frozen=True)
class SensorSettings:
    """The sampler's view of one configured sensor; ``options`` go to the driver."""

    name: str
    driver: str
    interval_s: float = 5.0
    timeout_s: float = 2.0
    max_age_s: float = 60.0
    enabled: bool = True
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_table(cls, name: str, table: Mapping[str, Any]) -> SensorSettings:
        prefix = f"sensors.{name}"
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError(prefix, name, "a sensor name of letters, digits, '_' or '-'")
        if not isinstance(table, Mapping):
            raise ConfigError(prefix, table, "a table with at least a driver key")
        common = Options(prefix, {k: v for k, v in table.items() if k in COMMON_KEYS})
        driver = common.get_str("driver")
        try:
            registry.get(driver, key=f"{prefix}.driver")  # fails helpfully on an unknown driver
        except ConfigError as exc:
            common.record(exc)
        config = cls(
            name=name,
            driver=driver,
            interval_s=common.get_float("interval_s", 5.0, positive=True),
            timeout_s=common.get_float("timeout_s", 2.0, positive=True),
            max_age_s=common.get_float("max_age_s", 60.0, positive=True),
            enabled=common.get_bool("enabled", True),
            ranges=_ranges(common),
            options={k: v for k, v in table.items() if k not in COMMON_KEYS},
        )
        common.done()
        return config


@dataclass(frozen=True)
class ConfiguredSensor:
    """A sensor's config together with the driver built from it."""

    config: SensorSettings
    driver: SensorDriver


def build_sensors(tables: Mapping[str, Any], *, clock: Clock) -> list[ConfiguredSensor]:
    """Build every enabled sensor; one ``ConfigError`` names every wrong key of every sensor.

    Two sensors may not produce the same feature name (their values would overwrite each
    other in a sample), and ``ranges`` may only name features the driver declares.
    """
    if not isinstance(tables, Mapping):
        raise ConfigError("sensors", tables, "a table of [sensors.<name>] tables")
    built: list[ConfiguredSensor] = []
    problems: list[ConfigError] = []
    owner: dict[str, str] = {}
    try:
        for name, table in tables.items():
            try:
                config = SensorSettings.from_table(name, table)
            except ConfigError as exc:
                problems.extend(flatten(exc))
                problems.extend(_driver_problems(name, table, clock))
                continue
            if not config.enabled:
                continue
            try:
                factory = registry.get(config.driver, key=f"sensors.{name}.driver")
                driver = factory.from_config(name, config.options, clock=clock)
            except ConfigError as exc:
                problems.extend(flatten(exc))
                continue
            built.append(ConfiguredSensor(config, driver))
            problems.extend(_clashes(name, config, driver, owner))
        if problems:
            raise combine(problems)
    except BaseException:
        for sensor in built:
            sensor.driver.close()
        raise
    return built


def _driver_problems(name: str, table: Any, clock: Clock) -> list[ConfigError]:
    """The driver's own option errors, for a table whose common keys are wrong."""
    driver = table.get("driver") if isinstance(table, Mapping) else None
    if not isinstance(driver, str) or driver not in registry.names():
        return []
    options = {k: v for k, v in table.items() if k not in COMMON_KEYS}
    try:
        registry.get(driver).from_config(name, options, clock=clock).close()
    except ConfigError as exc:
        return flatten(exc)
    return []


def _clashes(
    name: str, config: SensorSettings, driver: SensorDriver, owner: dict[str, str]
) -> list[ConfigError]:
    """``ranges`` naming unknown features, and features another sensor already produces."""
    problems: list[ConfigError] = []
    declared = [f.name for f in driver.features]
    for feature in config.ranges:
        if feature not in declared:
            problems.append(
                ConfigError(
                    f"sensors.{name}.ranges", feature, f"a feature of this sensor {declared}"
                )
            )
    for feature in declared:
        if feature in owner:
            problems.append(
                ConfigError(
                    f"sensors.{name}.driver",
                    config.driver,
                    f"a sensor whose features do not clash: {feature!r} is already "
                    f"produced by sensor {owner[feature]!r}",
                )
            )
        else:
            owner[feature] = name
    return problems


def _ranges(opts: Options) -> dict[str, tuple[float, float]]:
    raw = opts.get_raw("ranges", {})
    expected = "a table of feature = [low, high] with low < high, e.g. {temp_c = [-10, 45]}"
    if not isinstance(raw, Mapping):
        opts.report("ranges", raw, expected)
        return {}
    ranges: dict[str, tuple[float, float]] = {}
    for feature, bounds in raw.items():
        ok = isinstance(bounds, list | tuple) and len(bounds) == 2
        ok = ok and all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
        if not ok or not bounds[0] < bounds[1]:
            opts.report(f"ranges.{feature}", bounds, expected)
            continue
        ranges[str(feature)] = (float(bounds[0]), float(bounds[1]))
    return ranges
