"""``[federation]`` in agent.toml: where the SuperLink is and how the trainer is reached.

[federation]
enabled = true
superlink = "coordinator.local:9092"   # host:port of the coordinator's SuperLink
insecure = false                       # true only on a trusted LAN / loopback
root_certificates = "/etc/orchard/certs/ca.pem"
auth_private_key = "/etc/orchard/keys/supernode"      # SuperNode authentication
auth_public_key = "/etc/orchard/keys/supernode.pub"
runtime_port = 9094                    # this node's local Flower Runtime API
trainer_socket = "/run/orchard/trainer.sock"
trainer_launcher = "spawn"             # or "systemd" (socket-activated unit)
personalize = false                    # fine-tune the head; serve it only if it wins
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import ConfigError

LAUNCHERS = ("spawn", "systemd")


@dataclass(frozen=True)
class FederationSettings:
    enabled: bool = False
    superlink: str = "127.0.0.1:9092"
    insecure: bool = True
    root_certificates: Path | None = None
    auth_private_key: Path | None = None
    auth_public_key: Path | None = None
    runtime_port: int = 9094
    trainer_socket: Path = Path("/run/orchard/trainer.sock")
    trainer_launcher: str = "spawn"
    personalize: bool = False
    restart_min_s: float = 1.0
    restart_max_s: float = 60.0

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], state_dir: Path) -> FederationSettings:
        """Validate ``[federation]``; raise ``ConfigError`` naming the first wrong key."""
        known = set(cls.__dataclass_fields__)
        for key in table:
            if key not in known:
                raise ConfigError(
                    f"federation.{key}", table[key], f"one of {', '.join(sorted(known))}"
                )
        out: dict[str, Any] = {"trainer_socket": state_dir / "run" / "trainer.sock"}
        for key in ("enabled", "insecure", "personalize"):
            if key in table:
                if not isinstance(table[key], bool):
                    raise ConfigError(f"federation.{key}", table[key], "true or false")
                out[key] = table[key]
        if "superlink" in table:
            out["superlink"] = _address(table["superlink"])
        for key in ("root_certificates", "auth_private_key", "auth_public_key", "trainer_socket"):
            if key in table:
                value = table[key]
                if not isinstance(value, str) or not value:
                    raise ConfigError(f"federation.{key}", value, "a file path")
                out[key] = Path(value)
        if "runtime_port" in table:
            port = table["runtime_port"]
            if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
                raise ConfigError("federation.runtime_port", port, "a port from 1 to 65535")
            out["runtime_port"] = port
        if "trainer_launcher" in table:
            if table["trainer_launcher"] not in LAUNCHERS:
                raise ConfigError(
                    "federation.trainer_launcher", table["trainer_launcher"], " or ".join(LAUNCHERS)
                )
            out["trainer_launcher"] = table["trainer_launcher"]
        for key in ("restart_min_s", "restart_max_s"):
            if key in table:
                value = table[key]
                if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                    raise ConfigError(f"federation.{key}", value, "a positive number of seconds")
                out[key] = float(value)
        settings = cls(**out)
        if settings.enabled and not settings.insecure and settings.root_certificates is None:
            raise ConfigError(
                "federation.root_certificates",
                None,
                "a CA file when insecure = false (or insecure = true on a trusted network)",
            )
        if (settings.auth_private_key is None) != (settings.auth_public_key is None):
            raise ConfigError(
                "federation.auth_public_key",
                str(settings.auth_public_key),
                "both auth_private_key and auth_public_key, or neither",
            )
        return settings


def _address(value: Any) -> str:
    host, sep, port = str(value).rpartition(":")
    if not isinstance(value, str) or not sep or not host or not port.isdigit():
        raise ConfigError("federation.superlink", value, 'a "host:port" address')
    if not 1 <= int(port) <= 65535:
        raise ConfigError("federation.superlink", value, "a port from 1 to 65535")
    return value
