"""Device options: each wrong value is named with what was expected."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from provisioning import paths
from provisioning.errors import InvalidOption
from provisioning.options import (
    DEFAULT_PACKAGE,
    DeviceSettings,
    Endpoint,
    MqttTarget,
    orchard_extras,
)
from provisioning.plan import build_plan


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"device_id": "bad id"}, "device_id: expected 1-63 letters"),
        ({"hostname": "Bad_Host"}, "hostname: expected 1-63 lowercase"),
        ({"user": "root"}, "user: expected a login name"),
        ({"ssh_keys": ["not a key"]}, "ssh_keys: expected an OpenSSH public key line"),
        ({"wifi_psk": "short"}, "wifi_psk: expected 8 to 63 characters"),
        ({"wifi_country": "Germany"}, "wifi_country: expected an ISO 3166 code"),
        ({"coordinator": "coord:99999"}, "coordinator: expected HOST[:PORT]"),
        ({"mqtt": "http://broker"}, "mqtt: expected mqtt://"),
        ({"wheelhouse": "/nonexistent"}, "wheelhouse: expected a directory of .whl files"),
        ({"colour": "red"}, "colour: expected one of"),
        ({"wheelhouse": None}, "wheelhouse: expected a directory of .whl files (orchard-provision"),
        ({"package": "numpy"}, "package: expected orchard-fl[EXTRA,...]"),
        ({"index_url": "https://pypi.example/simple"}, "index_url: expected only with from_index"),
        ({"from_index": "yes"}, "from_index: expected true or false"),
        ({"from_index": True, "index_url": "ftp://x"}, "index_url: expected an http(s) URL"),
    ],
)
def test_bad_values_are_named(
    make_options: Callable[..., DeviceSettings], override: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidOption, match=re.escape(message)):
        make_options(**override)


def test_secrets_are_not_echoed(make_options: Callable[..., DeviceSettings]) -> None:
    with pytest.raises(InvalidOption) as info:
        make_options(wifi_psk="short")
    assert "short" not in str(info.value)


def test_defaults_and_parsing(make_options: Callable[..., DeviceSettings]) -> None:
    opts = make_options(device_id="Shed_Pi.2", coordinator="[fd00::5]", mqtt=None)
    assert opts.hostname == "shed-pi-2"
    assert opts.coordinator == Endpoint("fd00::5", 9092)
    assert str(opts.coordinator) == "[fd00::5]:9092"
    url = MqttTarget.from_url("mqtt://dev%40x:p%3Ass@broker:1884")
    assert url == MqttTarget("broker", 1884, False, "dev@x", "p:ss")
    assert MqttTarget.from_url("mqtts://broker").port == 8883
    assert DeviceSettings.from_mapping({"device_id": "a", "from_index": True}).wifi is None


def test_install_source_is_a_wheelhouse_unless_from_index(
    make_options: Callable[..., DeviceSettings],
) -> None:
    opts = make_options()
    assert opts.wheelhouse is not None and not opts.from_index and opts.package == DEFAULT_PACKAGE
    assert orchard_extras(opts.package) == ("agent", "train")
    assert orchard_extras("orchard-fl") == ()
    offline = build_plan(opts, None).file(paths.INSTALLER).content().decode()
    assert "SOURCE=wheelhouse" in offline and "--no-index" in offline
    indexed = make_options(from_index=True, index_url="https://pypi.example/simple")
    assert indexed.wheelhouse is None and indexed.index_url == "https://pypi.example/simple"
    script = build_plan(indexed, None).file(paths.INSTALLER).content().decode()
    assert "SOURCE=index" in script and "INDEX_URL=https://pypi.example/simple" in script
    with pytest.raises(InvalidOption, match="wheelhouse: expected no wheelhouse with from_index"):
        DeviceSettings.from_mapping(
            {"device_id": "a", "from_index": True, "wheelhouse": opts.wheelhouse}
        )
