"""The small pieces around TLS: what the agent reads in Flower's output, TLS-related settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.federation.settings import FederationSettings
from agent.federation.supernode import SupernodeSupervisor, refusal_in
from coordinator.federation.superlink import SuperLink, SuperLinkSettings

# Lines flower-supernode 1.41 printed: an unregistered key, no key, a SuperLink certificate
# from another CA, a TLS SuperNode against a SuperLink running with --insecure.
FLOWER_SAYS = {
    "[code: 2004] Failed to activate SuperNode.": "refused: not authorised (the SuperLink does "
    "not know this SuperNode's key; register it on the coordinator: flwr supernode register",
    "[code: 2001] SuperNode authentication is enabled. All SuperNodes must be registered via "
    "the CLI.": "refused: not authorised (the SuperLink requires SuperNode authentication; set "
    "[federation] auth_private_key and auth_public_key)",
    "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer "
    "certificate (_ssl.c:1006)": "TLS: certificate verify failed: unable to get local issuer "
    "certificate (is [federation] root_certificates the CA",
    "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)": "TLS: wrong version "
    "number (the SuperLink does not speak TLS on that port: is it running with --insecure?)",
    "[SSL: SOMETHING_NEW] something new (_ssl.c:1006)": "TLS: something new",
}


@pytest.mark.parametrize("line", sorted(FLOWER_SAYS))
def test_flowers_refusals_become_plain_words(line: str) -> None:
    assert str(refusal_in(line)).startswith(FLOWER_SAYS[line])


@pytest.mark.parametrize(
    "line",
    ["INFO :      SuperNode ID: 42", "WARNING :   Connection attempt failed, retrying", ""],
)
def test_ordinary_lines_are_not_refusals(line: str) -> None:
    assert refusal_in(line) is None


def test_root_certificates_turn_tls_on_and_contradicting_it_is_named() -> None:
    on = FederationSettings.from_mapping({"root_certificates": "/ca.pem"}, Path("/s"))
    assert on.insecure is False
    assert FederationSettings.from_mapping({}, Path("/s")).insecure is True
    with pytest.raises(ConfigError, match=r"federation.insecure: expected false when root_cert"):
        FederationSettings.from_mapping(
            {"root_certificates": "/ca.pem", "insecure": True}, Path("/s")
        )


def test_the_supernode_gets_its_private_key_only(tmp_path: Path) -> None:
    """flwr 1.41 derives the public half; its --auth-supernode-public-key is deprecated."""
    settings = FederationSettings.from_mapping(
        {"root_certificates": "/ca.pem", "auth_private_key": "/k", "auth_public_key": "/k.pub"},
        tmp_path,
    )
    cmd = SupernodeSupervisor(settings, state_dir=tmp_path, node_config={}).command()
    assert cmd[cmd.index("--root-certificates") + 1] == "/ca.pem" and "--insecure" not in cmd
    assert cmd[cmd.index("--auth-supernode-private-key") + 1] == "/k"
    assert "--auth-supernode-public-key" not in cmd


def test_superlink_tls_and_authentication_flags(tmp_path: Path) -> None:
    certs = (tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key")
    cmd = SuperLink(
        SuperLinkSettings(workdir=tmp_path, certificates=certs, supernode_auth=True)
    ).command()
    assert cmd[cmd.index("--ssl-ca-certfile") + 1] == str(certs[0])
    assert "--enable-supernode-auth" in cmd and "--insecure" not in cmd
    assert "--disable-runtime-dependency-installation" in cmd
    plain = SuperLink(SuperLinkSettings(workdir=tmp_path)).command()
    assert "--insecure" in plain and "--enable-supernode-auth" not in plain
