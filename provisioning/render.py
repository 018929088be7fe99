"""Text the plan writes: agent.toml, the budget drop-in, sysusers.d/tmpfiles.d, device.json."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from typing import Any

import tomli_w

from provisioning import paths
from provisioning.ca import DeviceIdentity
from provisioning.errors import InvalidOption
from provisioning.options import DeviceSettings

DEFAULT_SENSORS = {"board": {"driver": "system", "interval_s": 30}}


def agent_config(opts: DeviceSettings, identity: DeviceIdentity | None) -> dict[str, Any]:
    """The device's agent.toml as a table: the user's base config plus what provisioning owns."""
    data: dict[str, Any] = copy.deepcopy(dict(opts.base_config))
    data["device_id"] = opts.device_id
    data.setdefault("sensors", copy.deepcopy(DEFAULT_SENSORS))
    if opts.mqtt is not None:
        mqtt = dict(data.get("mqtt", {}))
        mqtt.update(host=opts.mqtt.host, port=opts.mqtt.port)
        for key in ("username", "password", "tls_ca", "tls_cert", "tls_key"):
            mqtt.pop(key, None)
        if opts.mqtt.tls:
            mqtt["tls_ca"] = paths.CA_PEM
            if identity is not None and identity.mqtt_cert is not None:
                mqtt.update(tls_cert=paths.MQTT_CERT, tls_key=paths.MQTT_KEY)
        username = opts.mqtt.username or (identity.mqtt_username if identity else None)
        password = opts.mqtt.password or (identity.mqtt_password if identity else None)
        if username:
            mqtt["username"] = username
        if password:
            mqtt["password"] = password
        data["mqtt"] = mqtt
    if opts.coordinator is not None:
        federation: dict[str, Any] = {
            "enabled": True,
            "superlink": str(opts.coordinator),
            "insecure": opts.insecure,
            # The socket-activated orchard-trainer.service (systemd/) listens here.
            "trainer_launcher": "systemd",
            "trainer_socket": paths.TRAINER_SOCK,
        }
        if not opts.insecure:
            federation["root_certificates"] = paths.CA_PEM
            if identity is not None:
                federation["auth_private_key"] = paths.SUPERNODE_KEY
                federation["auth_public_key"] = paths.SUPERNODE_PUB
        data["federation"] = {**dict(data.get("federation", {})), **federation}
    if identity is not None:
        # Delivered models must be signed by a certificate this fleet CA issued (require_signed
        # defaults to true with trust_ca; a base config may still say otherwise).
        data["models"] = {**dict(data.get("models", {})), "trust_ca": paths.CA_PEM}
    validate_agent_config(data)
    return data


def validate_agent_config(data: Mapping[str, Any]) -> None:
    """Check the result with the agent's own loader, so a bad base config fails here."""
    from agent.config import from_mapping
    from agent.errors import AgentError

    try:
        from_mapping(data, source="agent.toml")
    except AgentError as exc:
        raise InvalidOption("config", "agent.toml", f"a valid agent config: {exc}") from None


def toml_text(data: Mapping[str, Any]) -> bytes:
    header = "# Written by orchard-provision. Check it with: orchard-agent check-config FILE\n"
    return (header + tomli_w.dumps(dict(data))).encode()


def budget_dropin(config: Mapping[str, Any]) -> bytes:
    """``orchard-trainer.service.d/budget.conf`` from ``[training]`` (the agent's defaults)."""
    from agent.config import TrainingSettings
    from agent.errors import AgentError

    try:
        budget = TrainingSettings.from_mapping(config.get("training", {}))
    except AgentError as exc:
        raise InvalidOption("training", config.get("training"), str(exc)) from None
    return (
        "# Written by orchard-provision from [training] in /etc/orchard/agent.toml.\n"
        "[Service]\n"
        f"MemoryMax={budget.memory_mb}M\n"
        "MemorySwapMax=0\n"
        f"CPUQuota={budget.cpu_quota_pct}%\n"
        f"Nice={budget.nice}\n"
        f"CPUSchedulingPolicy={'idle' if budget.idle_scheduling else 'other'}\n"
    ).encode()


def sysusers() -> bytes:
    return (
        "# The Orchard agent's user; i2c for the sensors (Raspberry Pi OS ships the group).\n"
        f'u {paths.USER} - "Orchard agent" {paths.STATE_DIR} /usr/sbin/nologin\n'
        "g i2c -\n"
        f"m {paths.USER} i2c\n"
    ).encode()


def tmpfiles(owned: Iterable[tuple[str, int, str, str]]) -> bytes:
    """Ownership the plan intends, applied at boot once sysusers created the user."""
    lines = ["# Ownership of Orchard's files (the installer and sysusers.d create the user)."]
    lines.append(f"d {paths.STATE_DIR} 0750 {paths.USER} {paths.USER} -")
    lines.append(f"d {paths.STATE_DIR}/update 0750 {paths.USER} {paths.USER} -")
    lines.append(f"d {paths.ETC}/keys 0750 root {paths.USER} -")
    for path, mode, owner, group in owned:
        lines.append(f"z {path} {mode:04o} {owner} {group} -")
    return ("\n".join(lines) + "\n").encode()


def device_json(opts: DeviceSettings, identity: DeviceIdentity | None) -> bytes:
    facts: dict[str, Any] = {"device_id": opts.device_id, "hostname": opts.hostname}
    if opts.coordinator is not None:
        facts["superlink"] = str(opts.coordinator)
    if opts.mqtt is not None:
        facts["mqtt"] = f"{opts.mqtt.host}:{opts.mqtt.port}"
    if identity is not None:
        facts["supernode_public_key"] = identity.supernode_public.decode().strip()
    return json.dumps(facts, indent=2).encode() + b"\n"


FIRSTBOOT_UNIT = f"""\
# Installs the agent into {paths.VENV} (from the wheelhouse when present) and is a no-op when
# it is already installed. Runs at every boot before the agent; only the first one works.
# It waits for the network only when there is no wheelhouse on the card (an install from a
# package index): an offline board installs from the card at once, instead of after the
# network-online timeout (60 s with NetworkManager, 120 s with systemd-networkd).
[Unit]
Description=Orchard installer (creates {paths.VENV}; idempotent)
After=systemd-sysusers.service systemd-tmpfiles-setup.service network.target
Before={paths.AGENT_UNIT}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStartPre=-/bin/sh -c 'ls {paths.WHEELHOUSE}/*.whl >/dev/null 2>&1 || \\
    systemctl start network-online.target'
ExecStart=/bin/sh {paths.INSTALLER}
TimeoutStartSec=2h

[Install]
WantedBy=multi-user.target
"""
