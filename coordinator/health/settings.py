"""Health settings from ``coordinator.toml``: [mqtt], [registry], [dashboard], [selection].

Every key has a default; a file without these sections runs an embedded broker on loopback::

    [mqtt]                # no host: start the embedded broker (MQTT 3.1.1) on embedded_host:port
    host = "broker.lan"   # or point at Mosquitto
    port = 1883           # 8883 by default when tls_ca is set; 0 = any free port (embedded only)
    protocol = "auto"     # "auto" (v5, falling back to 3.1.1), "5" or "3.1.1"
    username = "coordinator"
    password = "..."
    tls_ca = "ca.pem"     # tls_cert + tls_key for a client certificate
    topic_prefix = "orchard/v1"
    fleet = "barn"        # only this fleet's devices (default: every fleet, and none)

    [registry]
    path = "fleet.sqlite"            # default: <runs_dir>/fleet.sqlite
    stale_after_intervals = 3        # missed health intervals before a device is stale
    default_interval_s = 30          # until a device's birth says its interval
    history_retention_h = 24

    [dashboard]
    enabled = true
    host = "127.0.0.1"
    port = 8780

    [selection]   # see coordinator.health.selection.SelectionPolicy

``FleetHealthSettings.from_mapping(doc)`` reads only these sections of the whole document and raises
``InvalidConfig`` listing every wrong key at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from agent.health.schema import DEFAULT_PREFIX, SchemaError, check_name, subscriptions
from coordinator.errors import InvalidConfig
from coordinator.health.selection import SelectionPolicy
from coordinator.options import Section

SECTIONS: Final = ("mqtt", "registry", "dashboard", "selection")
PROTOCOLS: Final = ("auto", "5", "3.1.1")


@dataclass(frozen=True)
class FleetMqttSettings:
    host: str | None = None  # None: embedded broker
    port: int = 1883
    protocol: str = "auto"
    username: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    keepalive_s: int = 30
    topic_prefix: str = DEFAULT_PREFIX
    fleet: str | None = None
    client_id: str | None = None
    embedded_host: str = "127.0.0.1"

    @property
    def embedded(self) -> bool:
        return self.host is None

    @classmethod
    def from_section(cls, sec: Section) -> FleetMqttSettings:
        tls_ca = sec.get_str("tls_ca", None)
        d = cls()
        s = cls(
            host=sec.get_str("host", None),
            port=sec.get_int("port", 8883 if tls_ca else d.port, low=0, high=65535),
            protocol=sec.get_str("protocol", d.protocol, choices=PROTOCOLS),
            username=sec.get_str("username", None),
            password=sec.get_str("password", None),
            tls_ca=tls_ca,
            tls_cert=sec.get_str("tls_cert", None),
            tls_key=sec.get_str("tls_key", None),
            keepalive_s=sec.get_int("keepalive_s", d.keepalive_s, low=5, high=3600),
            topic_prefix=sec.get_str("topic_prefix", d.topic_prefix),
            fleet=sec.get_str("fleet", None),
            client_id=sec.get_str("client_id", None),
            embedded_host=sec.get_str("embedded_host", d.embedded_host),
        )
        sec.done()
        if (s.tls_cert is None) != (s.tls_key is None):
            sec.fail("tls_key", s.tls_key, "tls_cert and tls_key set together")
        if s.password is not None and s.username is None:
            sec.fail("username", None, "a username when a password is set")
        if s.host is not None and s.port == 0:
            sec.fail("port", 0, "a port in [1, 65535] for an external broker")
        if s.host is None and (s.tls_ca or s.username):
            sec.fail("host", None, "a broker host when TLS or credentials are set")
        for option, value in (("topic_prefix", s.topic_prefix), ("fleet", s.fleet)):
            try:
                if option == "fleet" and value is not None:
                    check_name("fleet", value)
                elif option == "topic_prefix":
                    subscriptions(value or DEFAULT_PREFIX)
            except SchemaError as exc:
                sec.fail(option, value, exc.expected)
        return s


@dataclass(frozen=True)
class RegistrySettings:
    path: Path | None = None  # None: <runs_dir>/fleet.sqlite
    stale_after_intervals: float = 3.0
    default_interval_s: float = 30.0
    history_retention_h: float = 24.0

    @classmethod
    def from_section(cls, sec: Section) -> RegistrySettings:
        d = cls()
        path = sec.get_str("path", None)
        s = cls(
            path=Path(path).expanduser() if path else None,
            stale_after_intervals=sec.get_float(
                "stale_after_intervals", d.stale_after_intervals, low=1.0, high=1000.0
            ),
            default_interval_s=sec.get_float("default_interval_s", d.default_interval_s, low=0.1),
            history_retention_h=sec.get_float(
                "history_retention_h", d.history_retention_h, low=0.01, high=24.0 * 366
            ),
        )
        sec.done()
        return s

    def resolve_path(self, runs_dir: Path) -> Path:
        return self.path if self.path is not None else runs_dir / "fleet.sqlite"


@dataclass(frozen=True)
class DashboardSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8780  # 0: any free port

    @classmethod
    def from_section(cls, sec: Section) -> DashboardSettings:
        d = cls()
        s = cls(
            enabled=sec.get_bool("enabled", d.enabled),
            host=sec.get_str("host", d.host),
            port=sec.get_int("port", d.port, low=0, high=65535),
        )
        sec.done()
        return s


@dataclass(frozen=True)
class FleetHealthSettings:
    mqtt: FleetMqttSettings = field(default_factory=FleetMqttSettings)
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    dashboard: DashboardSettings = field(default_factory=DashboardSettings)
    selection: SelectionPolicy = field(default_factory=SelectionPolicy)

    @classmethod
    def from_mapping(
        cls, doc: Mapping[str, Any], source: str = "coordinator.toml"
    ) -> FleetHealthSettings:
        """Read the health sections of a parsed ``coordinator.toml``; other sections are ignored."""
        errors: list[str] = []
        sections = {name: Section(name, doc.get(name), errors) for name in SECTIONS}
        settings = cls(
            mqtt=FleetMqttSettings.from_section(sections["mqtt"]),
            registry=RegistrySettings.from_section(sections["registry"]),
            dashboard=DashboardSettings.from_section(sections["dashboard"]),
            selection=SelectionPolicy.from_section(sections["selection"]),
        )
        if errors:
            raise InvalidConfig(source, errors)
        return settings
