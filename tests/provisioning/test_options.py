"""Device options: each wrong value is named with what was expected."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from provisioning.errors import InvalidOption
from provisioning.options import DeviceOptions, Endpoint, MqttTarget


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
    ],
)
def test_bad_values_are_named(
    make_options: Callable[..., DeviceOptions], override: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidOption, match=message.replace("[", r"\[").replace("]", r"\]")):
        make_options(**override)


def test_secrets_are_not_echoed(make_options: Callable[..., DeviceOptions]) -> None:
    with pytest.raises(InvalidOption) as info:
        make_options(wifi_psk="short")
    assert "short" not in str(info.value)


def test_defaults_and_parsing(make_options: Callable[..., DeviceOptions]) -> None:
    opts = make_options(device_id="Shed_Pi.2", coordinator="[fd00::5]", mqtt=None)
    assert opts.hostname == "shed-pi-2"
    assert opts.coordinator == Endpoint("fd00::5", 9092)
    assert str(opts.coordinator) == "[fd00::5]:9092"
    url = MqttTarget.from_url("mqtt://dev%40x:p%3Ass@broker:1884")
    assert url == MqttTarget("broker", 1884, False, "dev@x", "p:ss")
    assert MqttTarget.from_url("mqtts://broker").port == 8883
    assert DeviceOptions.from_mapping({"device_id": "a"}).wifi is None
