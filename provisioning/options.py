"""What one device should become: validated once, shared by every target.

``DeviceSettings.from_mapping`` takes the raw values (CLI flags or a TOML table) and names each
wrong one: ``coordinator: expected HOST[:PORT] with a port in 1..65535. Received: ...``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from provisioning.errors import InvalidOption

DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")  # the agent's device_id rule
_HOSTNAME = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_SSH_KEY = re.compile(r"^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)|sk-\S+) [A-Za-z0-9+/=]+")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
FLOWER_FLEET_PORT = 9092
_KNOWN = {
    "device_id",
    "hostname",
    "user",
    "password_hash",
    "ssh_keys",
    "wifi_ssid",
    "wifi_psk",
    "wifi_country",
    "coordinator",
    "insecure",
    "mqtt",
    "wheelhouse",
    "package",
    "base_config",
    "timezone",
    "from_index",
    "index_url",
}
DEFAULT_PACKAGE = "orchard-fl[agent,train]"
_PROJECT = "orchard-fl"


@dataclass(frozen=True)
class Wifi:
    ssid: str
    psk: str
    country: str


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class MqttTarget:
    """``mqtt://[user:pass@]host[:port]`` or ``mqtts://...`` (TLS with a CA-signed client cert)."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(cls, url: str) -> MqttTarget:
        expected = "mqtt://[user:password@]host[:port] or mqtts://host[:port]"
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise InvalidOption("mqtt", url, expected) from None
        if (
            parts.scheme not in ("mqtt", "mqtts")
            or not parts.hostname
            or parts.path not in ("", "/")
        ):
            raise InvalidOption("mqtt", url, expected)
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


def parse_endpoint(name: str, value: str, default_port: int) -> Endpoint:
    """``host``, ``host:port`` or ``[v6]:port`` -> Endpoint; a clear error otherwise."""
    expected = "HOST[:PORT] with a port in 1..65535"
    text = value.strip()
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([A-Za-z0-9_.-]+)(?::(\d+))?", text)
    if not match:
        raise InvalidOption(name, value, expected)
    host = match.group(1) or match.group(3)
    port_text = match.group(2) or match.group(4)
    port = int(port_text) if port_text else default_port
    if not 1 <= port <= 65535:
        raise InvalidOption(name, value, expected)
    return Endpoint(host, port)


@dataclass(frozen=True)
class DeviceSettings:
    device_id: str
    hostname: str
    user: str = "pi"
    password_hash: str | None = None  # crypt(3) hash; None: password locked, SSH keys only
    ssh_keys: tuple[str, ...] = ()
    wifi: Wifi | None = None
    coordinator: Endpoint | None = None
    insecure: bool = False  # Flower without TLS (and so without SuperNode authentication)
    mqtt: MqttTarget | None = None
    wheelhouse: Path | None = None  # where the board installs from, offline (the default)
    package: str = DEFAULT_PACKAGE
    from_index: bool = False  # install from a package index instead (explicit opt-in)
    index_url: str | None = None  # with from_index: the index (else the board's pip config)
    timezone: str | None = None
    base_config: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> DeviceSettings:
        unknown = sorted(set(table) - _KNOWN)
        if unknown:
            raise InvalidOption(unknown[0], table[unknown[0]], f"one of {sorted(_KNOWN)}")
        device_id = table.get("device_id")
        if not isinstance(device_id, str) or not DEVICE_ID.match(device_id):
            raise InvalidOption(
                "device_id", device_id, "1-63 letters, digits, '.', '_' or '-', starting alnum"
            )
        hostname = table.get("hostname") or device_id.lower().replace("_", "-").replace(".", "-")
        if not _HOSTNAME.match(hostname):
            raise InvalidOption("hostname", hostname, "1-63 lowercase letters, digits or '-'")
        user = table.get("user") or "pi"
        if not _USER.match(user) or user in ("root", "orchard"):
            raise InvalidOption("user", user, "a login name such as 'pi' (not root or orchard)")
        keys = tuple(table.get("ssh_keys") or ())
        for key in keys:
            if not _SSH_KEY.match(key):
                raise InvalidOption("ssh_keys", key[:40], "an OpenSSH public key line")
        password_hash = table.get("password_hash")
        if password_hash is not None and not re.fullmatch(r"\$[0-9a-z]+\$\S+", password_hash):
            raise InvalidOption("password_hash", "<hidden>", "a crypt(3) hash ($y$... or $6$...)")
        coordinator = table.get("coordinator")
        mqtt = table.get("mqtt")
        package = table.get("package") or DEFAULT_PACKAGE
        if not re.fullmatch(r"[A-Za-z0-9_.\-\[\],=<>!~ ]+", package):
            raise InvalidOption("package", package, "a pip requirement such as orchard-fl[agent]")
        from_index, index_url, wheelhouse = _install_source(table, package)
        timezone = table.get("timezone")
        if timezone is not None and not re.fullmatch(
            r"[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*", timezone
        ):
            raise InvalidOption("timezone", timezone, "a tz name such as Europe/Berlin")
        base = table.get("base_config") or {}
        if not isinstance(base, Mapping):
            raise InvalidOption("base_config", base, "a parsed agent.toml table")
        return cls(
            device_id=device_id,
            hostname=hostname,
            user=user,
            password_hash=password_hash,
            ssh_keys=keys,
            wifi=_wifi(table),
            coordinator=parse_endpoint("coordinator", coordinator, FLOWER_FLEET_PORT)
            if coordinator
            else None,
            insecure=bool(table.get("insecure", False)),
            mqtt=MqttTarget.from_url(mqtt) if mqtt else None,
            wheelhouse=wheelhouse,
            package=package,
            from_index=from_index,
            index_url=index_url,
            timezone=timezone,
            base_config=base,
        )


def orchard_extras(package: str) -> tuple[str, ...]:
    """The extras of ``orchard-fl[agent,train]``: what a wheelhouse for ``package`` must hold."""
    expected = "orchard-fl[EXTRA,...] (a wheelhouse installs Orchard itself)"
    try:
        req = Requirement(package)
    except InvalidRequirement:
        raise InvalidOption("package", package, expected) from None
    if canonicalize_name(req.name) != _PROJECT or req.url or req.marker:
        raise InvalidOption("package", package, expected)
    return tuple(sorted(req.extras))


def _install_source(table: Mapping[str, Any], package: str) -> tuple[bool, str | None, Path | None]:
    """(from_index, index_url, wheelhouse): offline from a wheelhouse unless from_index."""
    from_index = table.get("from_index", False)
    if not isinstance(from_index, bool):
        raise InvalidOption("from_index", from_index, "true or false")
    index_url, wheelhouse = table.get("index_url"), table.get("wheelhouse")
    if index_url is not None and not from_index:
        raise InvalidOption("index_url", index_url, "only with from_index = true")
    if index_url is not None and not re.fullmatch(r"https?://[^\s'\"\\]+", index_url):
        raise InvalidOption("index_url", index_url, "an http(s) URL such as https://host/simple")
    if from_index:
        if wheelhouse is not None:
            raise InvalidOption("wheelhouse", str(wheelhouse), "no wheelhouse with from_index")
        return True, index_url, None
    orchard_extras(package)
    if wheelhouse is None:
        raise InvalidOption(
            "wheelhouse",
            None,
            "a directory of .whl files (orchard-provision wheelhouse), "
            "or from_index = true to install from a package index",
        )
    wheelhouse = Path(wheelhouse)
    if not wheelhouse.is_dir() or not any(wheelhouse.glob("*.whl")):
        raise InvalidOption("wheelhouse", str(wheelhouse), "a directory of .whl files")
    return False, None, wheelhouse


def _wifi(table: Mapping[str, Any]) -> Wifi | None:
    ssid, psk, country = table.get("wifi_ssid"), table.get("wifi_psk"), table.get("wifi_country")
    if not ssid:
        if psk or country:
            raise InvalidOption("wifi_ssid", ssid, "a network name when wifi_psk/country are set")
        return None
    if not 1 <= len(ssid.encode()) <= 32:
        raise InvalidOption("wifi_ssid", ssid, "1 to 32 bytes")
    if psk is None or not (8 <= len(psk) <= 63 or re.fullmatch(r"[0-9a-fA-F]{64}", psk)):
        raise InvalidOption("wifi_psk", "<hidden>", "8 to 63 characters (or 64 hex digits)")
    if not country or not _COUNTRY.match(country.upper()):
        raise InvalidOption("wifi_country", country, "an ISO 3166 code such as DE or GB")
    return Wifi(ssid=ssid, psk=psk, country=country.upper())


def read_ssh_key(path: Path) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidOption("ssh_key", str(path), f"a readable public key file ({exc})") from None
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def read_base_config(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidOption("config", str(path), f"a readable agent.toml ({exc})") from None
