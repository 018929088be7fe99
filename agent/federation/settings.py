"""``[federation]`` in agent.toml: where the SuperLink is and how the trainer is reached.

[federation]
enabled = true
superlink = "coordinator.local:9092"   # host:port of the coordinator's SuperLink
root_certificates = "/etc/orchard/certs/ca.pem"  # the fleet CA: TLS to the SuperLink
insecure = false                       # default: false with root_certificates, else true;
                                       # true only on a trusted LAN / loopback
auth_private_key = "/etc/orchard/keys/supernode"      # SuperNode authentication
auth_public_key = "/etc/orchard/keys/supernode.pub"
runtime_port = 9094                    # this node's local Flower Runtime API
trainer_socket = "/run/orchard/trainer.sock"
trainer_launcher = "spawn"             # or "systemd" (socket-activated unit)
personalize = false                    # fine-tune the head; serve it only if it wins
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.options import Options

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
        """Validate ``[federation]``; ``ConfigError`` names every wrong key at once."""
        o = Options("federation", table, collect=True)

        def path(key: str) -> Path | None:
            value = o.optional_str(key)
            return Path(value) if value else None

        superlink = o.get_str("superlink", cls.superlink)
        if not _ADDRESS.fullmatch(superlink) or not 1 <= int(superlink.rpartition(":")[2]) <= 65535:
            o.report("superlink", superlink, 'a "host:port" address with a port from 1 to 65535')
        settings = cls(
            enabled=o.get_bool("enabled", False),
            superlink=superlink,
            insecure=o.get_bool("insecure", not table.get("root_certificates")),
            root_certificates=path("root_certificates"),
            auth_private_key=path("auth_private_key"),
            auth_public_key=path("auth_public_key"),
            runtime_port=o.get_int("runtime_port", cls.runtime_port, low=1, high=65535),
            trainer_socket=Path(
                o.get_str("trainer_socket", str(state_dir / "run" / "trainer.sock"))
            ),
            trainer_launcher=o.get_str("trainer_launcher", "spawn", choices=LAUNCHERS),
            personalize=o.get_bool("personalize", False),
            restart_min_s=o.get_float("restart_min_s", cls.restart_min_s, positive=True),
            restart_max_s=o.get_float("restart_max_s", cls.restart_max_s, positive=True),
        )
        if settings.enabled and not settings.insecure and settings.root_certificates is None:
            o.report(
                "root_certificates",
                None,
                "a CA file when insecure = false (or insecure = true on a trusted network)",
            )
        if settings.insecure and settings.root_certificates is not None:
            o.report(
                "insecure",
                True,
                "false when root_certificates is set (TLS to the SuperLink), "
                "or no root_certificates",
            )
        if (settings.auth_private_key is None) != (settings.auth_public_key is None):
            o.report(
                "auth_public_key",
                str(settings.auth_public_key),
                "both auth_private_key and auth_public_key, or neither",
            )
        o.done()
        return settings


_ADDRESS = re.compile(r"[^\s:]+(:[^\s:]+)*:\d{1,5}")
