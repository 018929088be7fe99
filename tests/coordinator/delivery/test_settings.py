"""``[delivery]`` in coordinator.toml: defaults, TLS and signer checked at load, check-config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from coordinator import config
from coordinator.delivery.settings import DeliverySettings
from coordinator.errors import InvalidConfig

from .conftest import Pki

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "coordinator.example.toml"


def _load(delivery: dict[str, Any]) -> DeliverySettings:
    return config.from_mapping({"delivery": delivery}, source="c.toml").delivery


def _errors(delivery: dict[str, Any]) -> str:
    with pytest.raises(InvalidConfig) as info:
        _load(delivery)
    return str(info.value)


def test_defaults_without_the_table() -> None:
    settings = config.from_mapping({}).delivery
    assert settings == DeliverySettings()
    assert settings.url == "http://127.0.0.1:8781" and not settings.tls
    assert settings.signer() is None
    assert config.load(EXAMPLE).delivery == DeliverySettings(host="127.0.0.1", port=8781)


def test_tls_mtls_and_signer(pki: Pki) -> None:
    settings = _load(
        {
            "host": "0.0.0.0",
            "port": 9443,
            "base_url": "https://coordinator.local:9443/",
            "tls_cert": str(pki.server[0]),
            "tls_key": str(pki.server[1]),
            "tls_ca": str(pki.ca_pem),
            "signing_cert": str(pki.signer[0]),
            "signing_key": str(pki.signer[1]),
        }
    )
    assert settings.tls and settings.tls_ca == pki.ca_pem
    assert settings.url == "https://coordinator.local:9443"
    signer = settings.signer()
    assert signer is not None and signer.cert_path == pki.signer[0]
    derived = _load({"tls_cert": str(pki.server[0]), "tls_key": str(pki.server[1]), "port": 1})
    assert derived.url == "https://127.0.0.1:1"
    assert _load({"host": "::1"}).url == "http://[::1]:8781"


def test_every_wrong_key_is_named(pki: Pki, tmp_path: Path) -> None:
    text = _errors(
        {
            "port": 0,
            "host": "0.0.0.0",
            "tls_cert": str(pki.server[0]),
            "signing_cert": str(tmp_path / "missing.pem"),
            "colour": "red",
        }
    )
    for needle in (
        "delivery.port: expected an integer in [1, 65535]. Received: port=0",
        "delivery.colour: expected a known option",
        "delivery.signing_cert: expected an existing file",
        "delivery.tls_key: expected tls_cert and tls_key together",
        "delivery.base_url: expected a URL boards can reach",
    ):
        assert needle in text, text


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ({"base_url": "ftp://x"}, "delivery.base_url: expected an http:// or https:// URL"),
        ({"base_url": "https://x:1"}, "delivery.base_url: expected an http:// URL (no tls_cert)"),
        ({"tls_ca": "CA"}, "delivery.tls_cert: expected a server certificate"),
        ({"signing_cert": "SIGNER"}, "delivery.signing_key: expected signing_cert and signing_key"),
    ],
)
def test_inconsistent_tables_are_refused(pki: Pki, table: dict[str, Any], needle: str) -> None:
    files = {"CA": str(pki.ca_pem), "SIGNER": str(pki.signer[0])}
    assert needle in _errors({k: files.get(v, v) for k, v in table.items()})


def test_files_that_do_not_belong_together_are_refused(pki: Pki) -> None:
    tls = {"tls_cert": str(pki.server[0]), "tls_key": str(pki.signer[1])}
    assert "delivery.tls_key: expected the PEM private key of tls_cert" in _errors(tls)
    assert "delivery.base_url: expected an https:// URL (tls_cert is set)" in _errors(
        {"tls_cert": str(pki.server[0]), "tls_key": str(pki.server[1]), "base_url": "http://x"}
    )
    assert "delivery.tls_ca: expected a PEM CA certificate" in _errors(
        {
            "tls_cert": str(pki.server[0]),
            "tls_key": str(pki.server[1]),
            "tls_ca": str(pki.server[1]),
        }
    )
    server_as_signer = {"signing_cert": str(pki.server[0]), "signing_key": str(pki.server[1])}
    assert (
        "delivery.signing_cert: expected a certificate with the codeSigning extended key usage"
        in _errors(server_as_signer)
    )
    crossed = {"signing_cert": str(pki.signer[0]), "signing_key": str(pki.server[1])}
    assert "delivery.signing_key: expected the private key of" in _errors(crossed)


def test_check_config_names_a_wrong_delivery_key(pki: Pki, tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        f"[delivery]\nsigning_cert = '{pki.server[0]}'\nsigning_key = '{pki.server[1]}'\n"
    )
    exe = Path(sys.executable).parent / "orchard-coordinator"
    bad = subprocess.run(
        [exe, "check-config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 78, bad.stderr
    assert "delivery.signing_cert: expected a certificate with the codeSigning" in bad.stderr
    path.write_text(
        f"[delivery]\nsigning_cert = '{pki.signer[0]}'\nsigning_key = '{pki.signer[1]}'\n"
    )
    good = subprocess.run(
        [exe, "check-config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert good.returncode == 0 and "OK" in good.stdout, good.stderr
