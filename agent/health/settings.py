"""``[health]`` in ``agent.toml``: what the reporter needs beyond ``[mqtt]``'s connection.

    [health]
    outbox_max = 1000          # messages kept while the broker is unreachable (drop-oldest)
    outbox_path = "/var/lib/orchard/health-outbox.db"
    ha_discovery = false       # Home Assistant MQTT discovery under ha_prefix
    alert_temp_c = 80.0        # status becomes "alert" at or above this CPU temperature
    cpu_step_pct = 20.0        # significant change: CPU crosses a 20 % bucket,
    temp_step_c = 5.0          #   temperature a 5 °C bucket, memory a 10 % bucket
    mem_step_pct = 10.0
    min_change_gap_s = 5.0     # at most one change-triggered health message per gap
    sample_s = 5.0             # how often the board is sampled for changes

The connection itself (host, port, protocol, TLS, credentials, interval, prefix) comes from
``[mqtt]`` (``agent.config.MqttSettings``); the reporter reads it through ``BrokerSettings``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agent.options import Options

DEFAULT_STATE_DIR = Path("/var/lib/orchard")


class BrokerSettings(Protocol):
    """The fields of ``agent.config.MqttSettings`` the reporter uses."""

    @property
    def host(self) -> str | None: ...
    @property
    def port(self) -> int: ...
    @property
    def protocol(self) -> str: ...  # "auto" | "5" | "3.1.1"
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def tls_ca(self) -> str | None: ...
    @property
    def tls_cert(self) -> str | None: ...
    @property
    def tls_key(self) -> str | None: ...
    @property
    def keepalive_s(self) -> int: ...
    @property
    def health_interval_s(self) -> float: ...
    @property
    def topic_prefix(self) -> str: ...


@dataclass(frozen=True)
class HealthSettings:
    outbox_path: Path = DEFAULT_STATE_DIR / "health-outbox.db"
    outbox_max: int = 1000
    ha_discovery: bool = False
    ha_prefix: str = "homeassistant"
    alert_temp_c: float = 80.0
    cpu_step_pct: float = 20.0
    temp_step_c: float = 5.0
    mem_step_pct: float = 10.0
    min_change_gap_s: float = 5.0
    sample_s: float = 5.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    facts_root: Path = Path("/")  # where /proc and /sys are; tests point it at a fake tree

    @property
    def state_path(self) -> Path:
        """The reporter's small state file (session counter, seq reservation)."""
        return self.outbox_path.with_name("health-state.json")

    @classmethod
    def from_mapping(
        cls, table: Mapping[str, Any], state_dir: Path = DEFAULT_STATE_DIR
    ) -> HealthSettings:
        o = Options("health", table)
        settings = cls(
            outbox_path=Path(o.get_str("outbox_path", str(state_dir / "health-outbox.db"))),
            outbox_max=o.get_int("outbox_max", 1000, low=1, high=1_000_000),
            ha_discovery=o.get_bool("ha_discovery", False),
            ha_prefix=o.get_str("ha_prefix", "homeassistant"),
            alert_temp_c=o.get_float("alert_temp_c", 80.0, low=30.0, high=120.0),
            cpu_step_pct=o.get_float("cpu_step_pct", 20.0, low=1.0, high=100.0),
            temp_step_c=o.get_float("temp_step_c", 5.0, low=0.5, high=50.0),
            mem_step_pct=o.get_float("mem_step_pct", 10.0, low=1.0, high=100.0),
            min_change_gap_s=o.get_float("min_change_gap_s", 5.0, low=0.0),
            sample_s=o.get_float("sample_s", 5.0, low=0.1),
            reconnect_min_s=o.get_float("reconnect_min_s", 1.0, low=0.1),
            reconnect_max_s=o.get_float("reconnect_max_s", 60.0, low=1.0),
            facts_root=Path(o.get_str("facts_root", "/")),
        )
        o.done()
        if settings.reconnect_max_s < settings.reconnect_min_s:
            raise o.error("reconnect_max_s", settings.reconnect_max_s, ">= reconnect_min_s")
        return settings
