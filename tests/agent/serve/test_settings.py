"""The [http] table: defaults, and a ConfigError naming each wrong key."""

from __future__ import annotations

from typing import Any

import pytest

from agent.errors import ConfigError
from agent.serve import HttpSettings


def test_defaults_are_loopback_without_token() -> None:
    s = HttpSettings.from_mapping(None)
    assert (s.host, s.port, s.token, s.max_body_bytes, s.lan) == (
        "127.0.0.1",
        8765,
        None,
        65536,
        False,
    )
    assert s.loopback
    assert HttpSettings.from_mapping({}) == s


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "localhost"])
def test_loopback_hosts_need_no_lan_flag(host: str) -> None:
    assert HttpSettings.from_mapping({"host": host}).loopback


def test_lan_exposure_is_explicit() -> None:
    with pytest.raises(ConfigError) as info:
        HttpSettings.from_mapping({"host": "0.0.0.0"})
    assert info.value.key == "http.host"
    assert "lan = true" in str(info.value)
    s = HttpSettings.from_mapping({"host": "0.0.0.0", "lan": True, "token": "s3cret"})
    assert not s.loopback and s.token == "s3cret"


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"prot": 8765}, "http.prot"),
        ({"port": 70000}, "http.port"),
        ({"port": -1}, "http.port"),
        ({"port": "8765"}, "http.port"),
        ({"port": True}, "http.port"),
        ({"host": ""}, "http.host"),
        ({"host": 127}, "http.host"),
        ({"token": ""}, "http.token"),
        ({"token": "two words"}, "http.token"),
        ({"token": 1234}, "http.token"),
        ({"max_body_bytes": 10}, "http.max_body_bytes"),
        ({"max_body_bytes": 1.5}, "http.max_body_bytes"),
        ({"lan": "yes"}, "http.lan"),
    ],
)
def test_wrong_keys_are_named(table: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        HttpSettings.from_mapping(table)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: expected ")


def test_the_token_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        HttpSettings.from_mapping({"token": "has space"})
    assert "has space" not in str(info.value)


def test_not_a_table() -> None:
    with pytest.raises(ConfigError) as info:
        HttpSettings.from_mapping(["port"])  # type: ignore[arg-type]
    assert info.value.key == "http"


def test_every_wrong_key_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        HttpSettings.from_mapping({"port": -1, "max_body_bytes": 1, "lan": "no", "tokn": "t"})
    lines = str(info.value).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "http.tokn",
        "http.port",
        "http.max_body_bytes",
        "http.lan",
    ]
    assert "did you mean 'token'" in lines[0] and "Received: port=-1" in lines[1]
    assert info.value.key == "http.tokn"
