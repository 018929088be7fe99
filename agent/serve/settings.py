"""The ``[http]`` table of ``agent.toml``::

[http]
host = "127.0.0.1"      # a non-loopback address also needs lan = true
port = 8765             # 0 picks a free port (tests)
token = "..."           # optional bearer token for every endpoint but /healthz
max_body_bytes = 65536
lan = false
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.errors import ConfigError

PREFIX = "http"
MIN_BODY, MAX_BODY = 256, 64 << 20


@dataclass(frozen=True)
class HttpSettings:
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    max_body_bytes: int = 65536
    lan: bool = False

    def __post_init__(self) -> None:
        _check(self)

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any] | None) -> HttpSettings:
        """Build from the ``[http]`` table; raises :class:`ConfigError` naming the wrong key."""
        table = {} if table is None else table
        if not isinstance(table, Mapping):
            raise ConfigError(PREFIX, table, "a table")
        known = {f for f in cls.__dataclass_fields__}
        for key in table:
            if key not in known:
                raise ConfigError(
                    f"{PREFIX}.{key}", table[key], f"a known key ({', '.join(sorted(known))})"
                )
        return cls(**dict(table))

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check(s: HttpSettings) -> None:
    if not isinstance(s.host, str) or not s.host:
        raise ConfigError(f"{PREFIX}.host", s.host, "a non-empty host name or IP address")
    if not _is_int(s.port) or not 0 <= s.port <= 65535:
        raise ConfigError(f"{PREFIX}.port", s.port, "an integer in [0, 65535]")
    if s.token is not None and (not isinstance(s.token, str) or not s.token.strip()):
        raise ConfigError(f"{PREFIX}.token", "<hidden>", "a non-empty string, or no key at all")
    if s.token is not None and any(c.isspace() for c in s.token):
        raise ConfigError(f"{PREFIX}.token", "<hidden>", "a token without whitespace")
    if not _is_int(s.max_body_bytes) or not MIN_BODY <= s.max_body_bytes <= MAX_BODY:
        raise ConfigError(
            f"{PREFIX}.max_body_bytes", s.max_body_bytes, f"an integer in [{MIN_BODY}, {MAX_BODY}]"
        )
    if not isinstance(s.lan, bool):
        raise ConfigError(f"{PREFIX}.lan", s.lan, "true or false")
    if not s.lan and not is_loopback(s.host):
        raise ConfigError(
            f"{PREFIX}.host",
            s.host,
            "a loopback address (127.0.0.1, ::1, localhost) unless lan = true is set "
            "to expose the prediction endpoint on the network",
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
