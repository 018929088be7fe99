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
from agent.options import combine, flatten, unknown_key

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
        """Build from the ``[http]`` table; one :class:`ConfigError` names every wrong key."""
        table = {} if table is None else table
        if not isinstance(table, Mapping):
            raise ConfigError(PREFIX, table, "a table")
        known = list(cls.__dataclass_fields__)
        problems = [
            unknown_key(f"{PREFIX}.{key}", value, known)
            for key, value in table.items()
            if key not in known
        ]
        try:
            settings = cls(**{k: v for k, v in table.items() if k in known})
        except ConfigError as exc:
            problems.extend(flatten(exc))
        if problems:
            raise combine(problems)
        return settings

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
    """Raise one :class:`ConfigError` naming every wrong field."""
    problems: list[ConfigError] = []

    def wrong(field: str, value: Any, expected: str) -> None:
        problems.append(ConfigError(f"{PREFIX}.{field}", value, expected))

    host_ok = isinstance(s.host, str) and bool(s.host)
    if not host_ok:
        wrong("host", s.host, "a non-empty host name or IP address")
    if not _is_int(s.port) or not 0 <= s.port <= 65535:
        wrong("port", s.port, "an integer in [0, 65535]")
    if s.token is not None and (not isinstance(s.token, str) or not s.token.strip()):
        wrong("token", "<hidden>", "a non-empty string, or no key at all")
    elif s.token is not None and any(c.isspace() for c in s.token):
        wrong("token", "<hidden>", "a token without whitespace")
    if not _is_int(s.max_body_bytes) or not MIN_BODY <= s.max_body_bytes <= MAX_BODY:
        wrong("max_body_bytes", s.max_body_bytes, f"an integer in [{MIN_BODY}, {MAX_BODY}]")
    lan_ok = isinstance(s.lan, bool)
    if not lan_ok:
        wrong("lan", s.lan, "true or false")
    if host_ok and lan_ok and not s.lan and not is_loopback(s.host):
        wrong(
            "host",
            s.host,
            "a loopback address (127.0.0.1, ::1, localhost) unless lan = true is set "
            "to expose the prediction endpoint on the network",
        )
    if problems:
        raise combine(problems)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
