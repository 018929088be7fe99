from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.federation.settings import FederationSettings
from agent.federation.supernode import SupernodeSupervisor, node_config_arg


def test_defaults_put_the_trainer_socket_under_the_state_dir() -> None:
    s = FederationSettings.from_mapping({}, Path("/var/lib/orchard"))
    assert not s.enabled
    assert s.trainer_socket == Path("/var/lib/orchard/run/trainer.sock")


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"superlink": "nohost"}, r"federation.superlink: expected a \"host:port\""),
        ({"superlink": "h:70000"}, "port from 1 to 65535"),
        ({"enabled": "yes"}, "federation.enabled: expected true or false"),
        ({"trainer_launcher": "docker"}, "one of 'spawn', 'systemd'"),
        ({"runtime_port": 0}, "runtime_port"),
        ({"colour": 1}, "federation.colour"),
        ({"enabled": True, "insecure": False}, "root_certificates"),
        ({"auth_private_key": "/k"}, "auth_public_key"),
    ],
)
def test_bad_values_name_the_key(table: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        FederationSettings.from_mapping(table, Path("/s"))


def test_every_wrong_key_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        FederationSettings.from_mapping(
            {"superlink": "nohost", "runtime_port": 0, "colour": 1, "enabled": "yes"}, Path("/s")
        )
    text = str(info.value)
    for key in ("superlink", "runtime_port", "colour", "enabled"):
        assert f"federation.{key}" in text, text


def test_node_config_parses_with_flowers_own_parser() -> None:
    from flwr.common.config import parse_config_args

    text = node_config_arg(
        {"device-id": "pi-one", "agent-config": "/etc/orchard/agent.toml", "n": 3}
    )
    parsed = parse_config_args([text])
    assert parsed == {"device-id": "pi-one", "agent-config": "/etc/orchard/agent.toml", "n": 3}


def test_supernode_command_uses_tls_or_insecure_and_auth_keys(tmp_path: Path) -> None:
    secure = FederationSettings(
        superlink="coord:9092",
        insecure=False,
        root_certificates=Path("/ca.pem"),
        auth_private_key=Path("/k"),
        auth_public_key=Path("/k.pub"),
        runtime_port=9100,
    )
    cmd = SupernodeSupervisor(secure, state_dir=tmp_path, node_config={"device-id": "a"}).command()
    assert cmd[cmd.index("--superlink") + 1] == "coord:9092"
    assert "--insecure" not in cmd and cmd[cmd.index("--root-certificates") + 1] == "/ca.pem"
    assert cmd[cmd.index("--auth-supernode-private-key") + 1] == "/k"
    assert cmd[cmd.index("--port") + 1] == "9100"
    plain = SupernodeSupervisor(FederationSettings(), state_dir=tmp_path, node_config={}).command()
    assert "--insecure" in plain
