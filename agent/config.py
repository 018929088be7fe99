"""``agent.toml``: load, validate, and name every wrong key.

Every key has a default where one makes sense; a minimal file is ``device_id = "pi-1"`` plus
one ``[sensors.NAME]`` table. Paths default under ``state_dir`` (``/var/lib/orchard``).

    device_id = "kitchen-pi"
    state_dir = "/var/lib/orchard"

    [sensors.room]
    driver = "bme280"
    interval_s = 10

    [store]          # max_rows, max_age_s, max_bytes, synchronous
    [models]         # dir, num_threads, latency_bound_ms, trust_ca, require_signed, fetch/retry
    [http]           # host, port, token, max_body_bytes, lan
    [mqtt]           # host, port, protocol, username, password, tls_*, health_interval_s
    [training]       # memory_mb, cpu_quota_pct, max_seconds, max_temp_c, allowed_hours, nice,
                     # idle_scheduling, reserve_agent_cpu
    [sampling]       # interval_s (for sensors that set none), max_consecutive_errors,
                     # retry_disabled_s
    [labels]         # max_per_minute, match_tolerance_s, mqtt_topic, path, max_predictions,
                     # max_age_s
    [remote]         # healthy_within_s, trial_starts
    [logging]        # level

:func:`load` applies the remote overlay, ``<state_dir>/remote/agent.toml`` (written from signed
remote commands, :mod:`agent.overlay`), over the file; ``AgentSettings.overlay`` says which keys
came from it and ``config_version`` names the effective config.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agent.errors import AgentError, ConfigError, InvalidConfig
from agent.federation.budget import TrainingSettings as TrainingSettings
from agent.federation.settings import FederationSettings
from agent.health.settings import HealthSettings
from agent.labels.settings import LabelSettings
from agent.options import Options, collecting, flatten
from agent.overlay import OverlayError, config_version, last_good_path, overlay_path
from agent.overlay import read as read_overlay
from agent.sensors.config import SensorSettings, build_sensors
from agent.sensors.sampler import SamplerSettings
from agent.serve.settings import HttpSettings
from agent.store.options import StoreSettings

logger = logging.getLogger(__name__)

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
DEFAULT_STATE_DIR = "/var/lib/orchard"
_SECTIONS = (
    "sensors",
    "store",
    "models",
    "http",
    "mqtt",
    "health",
    "training",
    "sampling",
    "federation",
    "labels",
    "remote",
    "logging",
)
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class ModelSettings:
    """``[models]``: where models live, how they run, and what a delivered model must prove.

    ``trust_ca`` is the fleet CA a delivered model's signer certificate must be issued by
    (provisioning with an identity sets it); ``require_signed`` (default: true when
    ``trust_ca`` is set) refuses unsigned deliveries. ``fetch_timeout_s`` bounds each HTTP
    read of a delivery; failed deliveries are retried after ``retry_min_s``, doubling up to
    ``retry_max_s``.
    """

    dir: Path
    num_threads: int = 1
    latency_bound_ms: float = 50.0
    trust_ca: Path | None = None
    require_signed: bool = False
    fetch_timeout_s: float = 30.0
    retry_min_s: float = 5.0
    retry_max_s: float = 300.0

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], state_dir: Path) -> ModelSettings:
        o = Options("models", table, collect=True)
        # Not checked for existence: provisioning validates the rendered file on the laptop,
        # where the board's CA path does not exist; a missing file refuses each delivery.
        ca = o.optional_str("trust_ca")
        trust_ca = Path(ca) if ca else None
        retry_min_s = o.get_float("retry_min_s", 5.0, positive=True)
        settings = cls(
            dir=Path(o.get_str("dir", str(state_dir / "models"))),
            num_threads=o.get_int("num_threads", 1, low=1, high=16),
            latency_bound_ms=o.get_float("latency_bound_ms", 50.0, positive=True),
            trust_ca=trust_ca,
            require_signed=o.get_bool("require_signed", o.given("trust_ca")),
            fetch_timeout_s=o.get_float("fetch_timeout_s", 30.0, positive=True),
            retry_min_s=retry_min_s,
            retry_max_s=o.get_float("retry_max_s", max(300.0, retry_min_s), low=retry_min_s),
        )
        if settings.require_signed and not o.given("trust_ca"):
            o.report(
                "require_signed", True, "false, or trust_ca set to the fleet CA that signs models"
            )
        o.done()
        return settings


@dataclass(frozen=True)
class MqttSettings:
    """Broker connection for health (used by the health reporter). ``host=None``: disabled."""

    host: str | None = None
    port: int = 1883
    protocol: str = "auto"  # "auto" tries MQTT 5 and falls back to 3.1.1
    username: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    keepalive_s: int = 30
    health_interval_s: float = 30.0
    topic_prefix: str = "orchard/v1"

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> MqttSettings:
        o = Options("mqtt", table, collect=True)
        tls_default = 8883 if table.get("tls_ca") else 1883
        settings = cls(
            host=o.optional_str("host"),
            port=o.get_int("port", tls_default, low=1, high=65535),
            protocol=o.get_str("protocol", "auto", choices=("auto", "5", "3.1.1")),
            username=o.optional_str("username"),
            password=o.optional_str("password"),
            tls_ca=o.optional_str("tls_ca"),
            tls_cert=o.optional_str("tls_cert"),
            tls_key=o.optional_str("tls_key"),
            keepalive_s=o.get_int("keepalive_s", 30, low=5, high=3600),
            health_interval_s=o.get_float("health_interval_s", 30.0, low=1.0),
            topic_prefix=o.get_str("topic_prefix", "orchard/v1"),
        )
        if (settings.tls_cert is None) != (settings.tls_key is None):
            o.report("tls_key", settings.tls_key, "tls_cert and tls_key together")
        o.done()
        return settings


@dataclass(frozen=True)
class RemoteSettings:
    """``[remote]``: how a remote configuration change that needs a restart is tried.

    The agent restarts (through systemd) to take it and must become healthy within
    ``healthy_within_s`` of a start, in at most ``trial_starts`` starts (keep it below the
    unit's ``StartLimitBurst``), else the last good config comes back (docs/remote-config.md).
    """

    healthy_within_s: float = 60.0
    trial_starts: int = 2

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> RemoteSettings:
        o = Options("remote", table, collect=True)
        settings = cls(
            healthy_within_s=o.get_float("healthy_within_s", 60.0, low=5.0, high=3600.0),
            trial_starts=o.get_int("trial_starts", 2, low=1, high=4),
        )
        o.done()
        return settings


@dataclass(frozen=True)
class LoggingSettings:
    """``[logging] level``: the agent's log level (``-v`` makes it debug)."""

    level: str = "info"

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> LoggingSettings:
        o = Options("logging", table, collect=True)
        settings = cls(level=o.get_str("level", "info", choices=LOG_LEVELS))
        o.done()
        return settings


@dataclass(frozen=True)
class OverlayUse:
    """Which remote overlay :func:`load` applied (``path``: the overlay or its last-good copy;
    ``None``: none), the keys it set or removed, and why an overlay file was skipped."""

    path: Path | None = None
    keys: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class AgentSettings:
    device_id: str
    fleet: str | None
    state_dir: Path
    sensors: tuple[SensorSettings, ...]
    store: StoreSettings
    models: ModelSettings
    http: HttpSettings
    mqtt: MqttSettings
    training: TrainingSettings
    sampling: SamplerSettings
    sensor_tables: Mapping[str, Any]
    federation: FederationSettings = field(default_factory=FederationSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    labels: LabelSettings = field(default_factory=LabelSettings)
    remote: RemoteSettings = field(default_factory=RemoteSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    source: str = "<defaults>"
    config_version: str = ""  # agent.overlay.config_version of the mapping it was built from
    overlay: OverlayUse = field(default_factory=OverlayUse)


def _sampling(table: Mapping[str, Any]) -> tuple[SamplerSettings, float | None]:
    """``[sampling]`` and its ``interval_s``: the read interval of sensors that set none."""
    o = Options("sampling", table, collect=True)
    interval = None
    if o.given("interval_s"):
        interval = o.get_float("interval_s", 5.0, positive=True)
    cfg = SamplerSettings(
        max_consecutive_errors=o.get_int("max_consecutive_errors", 5, low=1),
        retry_disabled_s=o.get_float("retry_disabled_s", 300.0, positive=True),
    )
    o.done()
    return cfg, interval


def _default_interval(tables: Mapping[str, Any], interval: float | None) -> Mapping[str, Any]:
    if interval is None:
        return tables
    return {
        name: {"interval_s": interval, **t} if isinstance(t, Mapping) else t
        for name, t in tables.items()
    }


def _store(table: Mapping[str, Any], state_dir: Path) -> StoreSettings:
    values = dict(table)
    values.setdefault("path", str(state_dir / "store.db"))
    values.setdefault("max_bytes", 512 * 1024 * 1024)
    return StoreSettings.from_mapping(values)


def _table(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, Mapping):
        raise ConfigError(name, value, f"a table ([{name}])")
    return value


class _Collector:
    """Collect ``ConfigError``s so one run names every wrong key, not just the first."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    @contextlib.contextmanager
    def section(self) -> Iterator[None]:
        try:
            yield
        except ConfigError as exc:
            self.errors.extend(str(e) for e in flatten(exc))


def _sensors(sensor_tables: Mapping[str, Any], check: _Collector) -> tuple[SensorSettings, ...]:
    if not sensor_tables:
        check.errors.append(str(ConfigError("sensors", {}, "at least one [sensors.NAME] table")))
        return ()
    # Build the drivers once to check their options (no hardware or network is touched); this
    # names every wrong key of every sensor, and clashes between sensors.
    with check.section():
        for sensor in build_sensors(sensor_tables, clock=time.time):
            sensor.driver.close()
        return tuple(SensorSettings.from_table(n, t) for n, t in sensor_tables.items())
    return ()


def from_mapping(data: Mapping[str, Any], source: str = "<mapping>") -> AgentSettings:
    """Validate a parsed ``agent.toml``; ``InvalidConfig`` lists every wrong key found."""
    with collecting():  # every Options, drivers' included, records all its wrong keys
        return _from_mapping(data, source)


def _from_mapping(data: Mapping[str, Any], source: str) -> AgentSettings:
    check = _Collector()
    top = Options("", {k: v for k, v in data.items() if k not in _SECTIONS}, collect=True)
    device_id = top.get_str("device_id", socket.gethostname())
    if not _ID.match(device_id):
        top.report("device_id", device_id, "letters, digits, '.', '_' or '-'")
    fleet = top.optional_str("fleet")
    state_dir = Path(top.get_str("state_dir", DEFAULT_STATE_DIR))
    with check.section():
        top.done(also=_SECTIONS)
    tables: dict[str, Mapping[str, Any]] = {}
    for name in _SECTIONS:
        tables[name] = {}
        with check.section():
            tables[name] = _table(data, name)
    parts: dict[str, Any] = {"sampling": SamplerSettings()}
    interval = None
    with check.section():
        parts["sampling"], interval = _sampling(tables["sampling"])
    sensor_tables = _default_interval(tables["sensors"], interval)
    sensors = _sensors(sensor_tables, check)

    builders: dict[str, Callable[[], Any]] = {
        "store": lambda: _store(tables["store"], state_dir),
        "models": lambda: ModelSettings.from_mapping(tables["models"], state_dir),
        "http": lambda: HttpSettings.from_mapping(tables["http"]),
        "mqtt": lambda: MqttSettings.from_mapping(tables["mqtt"]),
        "training": lambda: TrainingSettings.from_mapping(tables["training"]),
        "federation": lambda: FederationSettings.from_mapping(tables["federation"], state_dir),
        "health": lambda: HealthSettings.from_mapping(tables["health"], state_dir),
        "labels": lambda: LabelSettings.from_mapping(tables["labels"], state_dir),
        "remote": lambda: RemoteSettings.from_mapping(tables["remote"]),
        "logging": lambda: LoggingSettings.from_mapping(tables["logging"]),
    }
    for name, build in builders.items():
        with check.section():
            parts[name] = build()
    with check.section():
        _check_label_topic(parts.get("labels"), parts.get("mqtt"))
    if check.errors:
        raise InvalidConfig(source, check.errors)
    return AgentSettings(
        device_id=device_id,
        fleet=fleet,
        state_dir=state_dir,
        sensors=sensors,
        sensor_tables=sensor_tables,
        source=source,
        config_version=config_version(data),
        **parts,
    )


def _check_label_topic(labels: LabelSettings | None, mqtt: MqttSettings | None) -> None:
    """``[labels] mqtt_topic`` needs the broker, and must not reach the coordinator's ingest."""
    if labels is None or mqtt is None or labels.mqtt_topic is None:
        return
    topic = labels.mqtt_topic
    if mqtt.host is None:
        raise ConfigError("labels.mqtt_topic", topic, "no topic unless [mqtt] host is set")
    if topic.startswith(mqtt.topic_prefix + "/"):
        raise ConfigError(
            "labels.mqtt_topic",
            topic,
            f"a topic outside [mqtt] topic_prefix ({mqtt.topic_prefix}/...): the coordinator "
            "ingests everything under it, and raw labels never leave the board",
        )


def load(path: Path, *, overlay: bool = True) -> AgentSettings:
    """Read and validate ``path`` with the remote overlay applied (unless ``overlay=False``);
    raise ``InvalidConfig`` naming every problem of the file.

    An overlay that no longer fits the file (unreadable, or the result fails validation, e.g.
    after re-provisioning) is skipped with a warning, then its last-good copy, then the file
    alone runs: a remote change can never stop the agent from starting.
    """
    data = _read(path)
    source = str(path)
    state_dir = data.get("state_dir", DEFAULT_STATE_DIR)
    if not overlay or not isinstance(state_dir, str) or not state_dir:
        return _validated(data, source)
    skipped: list[str] = []
    current = overlay_path(Path(state_dir))
    for file in (current, last_good_path(Path(state_dir))):
        try:
            remote = read_overlay(file)
            if remote is None:
                if file == current:
                    break  # no overlay at all
                continue
            merged = remote.apply(data)
            if merged.get("state_dir", DEFAULT_STATE_DIR) != state_dir:
                raise OverlayError(f"{file}: expected no state_dir. Received: a new one")
            settings = _validated(merged, source)
        except (OverlayError, ConfigError, InvalidConfig) as exc:
            logger.warning("remote overlay %s skipped: %s", file, exc)
            skipped.append(f"{file}: {exc}")
            continue
        return replace(settings, overlay=OverlayUse(file, remote.keys, tuple(skipped)))
    return replace(_validated(data, source), overlay=OverlayUse(skipped=tuple(skipped)))


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidConfig(str(path), ["the file does not exist"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidConfig(str(path), [f"cannot read it: {exc}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidConfig(str(path), [f"expected valid TOML: {exc}"]) from exc


def _validated(data: Mapping[str, Any], source: str) -> AgentSettings:
    try:
        return from_mapping(data, source=source)
    except InvalidConfig:
        raise
    except AgentError as exc:  # a driver's own check, e.g. a sensor feature clash
        raise InvalidConfig(source, [str(exc)]) from exc
