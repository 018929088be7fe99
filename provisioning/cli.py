"""``orchard-provision``: put the agent onto a board (image, rootfs or ssh) and run the CA."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from provisioning.cli_ca import ca_app
from provisioning.cli_common import errors, say
from provisioning.errors import ProvisionError

app = typer.Typer(help="Orchard provisioning: put the agent onto a Pi.", no_args_is_help=True)
app.add_typer(ca_app, name="ca")  # its commands: provisioning/cli_ca.py

DeviceId = Annotated[str, typer.Option("--device-id", help="The device's id (agent device_id).")]
CaDir = Annotated[
    Path | None,
    typer.Option("--ca", help="Fleet CA dir: issue the device's SuperNode key and MQTT creds."),
]
Hostname = Annotated[str | None, typer.Option(help="Hostname (default: from the device id).")]
User = Annotated[str, typer.Option(help="Login user created on first boot.")]
PasswordHash = Annotated[
    str | None, typer.Option(help="crypt(3) hash for the user (openssl passwd -6); else locked.")
]
SshKey = Annotated[
    list[Path] | None, typer.Option("--ssh-key", help="Authorized public key file (repeatable).")
]
WifiSsid = Annotated[str | None, typer.Option(help="Wi-Fi network name.")]
WifiPsk = Annotated[str | None, typer.Option(help="Wi-Fi passphrase (stored as the WPA PSK).")]
WifiCountry = Annotated[str | None, typer.Option(help="Wi-Fi regulatory country, e.g. DE.")]
Coordinator = Annotated[
    str | None, typer.Option(help="Flower SuperLink HOST[:PORT] (default port 9092).")
]
Insecure = Annotated[bool, typer.Option(help="Flower without TLS (no SuperNode auth).")]
Mqtt = Annotated[
    str | None, typer.Option(help="Broker URL: mqtt://[user:pw@]host[:port], mqtts://")
]
MqttAuth = Annotated[
    str | None, typer.Option(help="cert | password | none (default: cert for mqtts://).")
]
Wheelhouse = Annotated[
    Path | None,
    typer.Option(help="Wheelhouse the board installs from offline (default: build one, cached)."),
]
FromIndex = Annotated[
    bool, typer.Option("--from-index", help="Install from a package index instead (no wheelhouse).")
]
IndexUrl = Annotated[
    str | None, typer.Option(help="With --from-index: the index URL (else the board's pip.conf).")
]
Package = Annotated[str, typer.Option(help="What pip installs into /opt/orchard/venv.")]
Python = Annotated[str, typer.Option(help="The board's Python: 3.11 (Bookworm), 3.13 (Trixie).")]
Platform = Annotated[str, typer.Option(help="The board's machine: aarch64 (64-bit OS) or armv7l.")]
Config = Annotated[Path | None, typer.Option("--config", help="Base agent.toml (sensors, budget).")]
Timezone = Annotated[str | None, typer.Option(help="Time zone, e.g. Europe/Berlin.")]
Reissue = Annotated[bool, typer.Option(help="Issue new keys even if the device has some.")]


def _wheelhouse(values: dict[str, Any], python: str, platform: str) -> Path:
    """The wheelhouse the board installs from, verified before anything is touched: the one
    given with --wheelhouse, or one built (or reused) in the cache for this target."""
    from provisioning import wheelcheck, wheelhouse
    from provisioning.options import DEFAULT_PACKAGE, orchard_extras

    extras = orchard_extras(values.get("package", DEFAULT_PACKAGE))
    given = values.get("wheelhouse")
    if given is None:
        return wheelhouse.ensure(python, platform, extras, progress=say)
    checked = wheelcheck.verify(given, python, platform, extras)
    say(f"wheelhouse {given}: {len(checked.used)} wheels verified for {checked.target}")
    return Path(given)


def _plan(
    values: dict[str, Any],
    ca: Path | None,
    mqtt_auth: str | None,
    reissue: bool,
    python: str,
    platform: str,
) -> Any:
    """Options, then the wheelhouse, then the CA: every check runs before anything is written
    (the CA's inventory, the image, the root, the board)."""
    from provisioning.ca import FleetCA
    from provisioning.errors import InvalidOption
    from provisioning.options import DeviceSettings, read_base_config, read_ssh_key
    from provisioning.plan import build_plan

    keys = [line for path in values.pop("ssh_key") or [] for line in read_ssh_key(path)]
    config = values.pop("config")
    values["ssh_keys"] = keys
    values["base_config"] = read_base_config(config) if config else {}
    values = {k: v for k, v in values.items() if v is not None and v is not False}
    if "index_url" in values and not values.get("from_index"):
        raise InvalidOption("index_url", values["index_url"], "only with --from-index")
    draft = DeviceSettings.from_mapping({**values, "from_index": True, "wheelhouse": None})
    if ca is None and draft.coordinator is not None and not draft.insecure:
        raise ProvisionError("--coordinator needs --ca (SuperNode key, TLS root) or --insecure")
    fleet = FleetCA.open(ca) if ca is not None else None
    if not values.get("from_index"):
        values["wheelhouse"] = _wheelhouse(values, python, platform)
    opts = DeviceSettings.from_mapping(values)
    identity = None
    if fleet is not None:
        if mqtt_auth is None:
            needs_creds = opts.mqtt is not None and opts.mqtt.username is None
            mqtt_auth = (
                "cert" if opts.mqtt and opts.mqtt.tls else "password" if needs_creds else "none"
            )
        identity = fleet.issue(opts.device_id, mqtt=mqtt_auth, reissue=reissue)
    return build_plan(opts, identity)


@app.command()
def image(
    image: Annotated[Path, typer.Option(help="Raspberry Pi OS .img or .img.xz (not modified).")],
    device_id: DeviceId,
    out: Annotated[Path | None, typer.Option(help="Result .img or .img.xz.")] = None,
    os_flavour: Annotated[str, typer.Option("--os", help="auto | bookworm | trixie")] = "auto",
    write: Annotated[Path | None, typer.Option(help="Then write it to this SD card.")] = None,
    yes_erase_disk: Annotated[bool, typer.Option(help="Confirm --write.")] = False,
    ca: CaDir = None,
    hostname: Hostname = None,
    user: User = "pi",
    password_hash: PasswordHash = None,
    ssh_key: SshKey = None,
    wifi_ssid: WifiSsid = None,
    wifi_psk: WifiPsk = None,
    wifi_country: WifiCountry = None,
    coordinator: Coordinator = None,
    insecure: Insecure = False,
    mqtt: Mqtt = None,
    mqtt_auth: MqttAuth = None,
    wheelhouse: Wheelhouse = None,
    from_index: FromIndex = False,
    index_url: IndexUrl = None,
    package: Package = "orchard-fl[agent,train]",
    python: Python = "3.11",
    platform: Platform = "aarch64",
    config: Config = None,
    timezone: Timezone = None,
    reissue: Reissue = False,
) -> None:
    """Edit a Raspberry Pi OS image offline (no root) so the board provisions itself."""
    values = {k: v for k, v in locals().items() if k not in _NOT_OPTIONS}
    from provisioning.image import disk, files
    from provisioning.targets import get

    with errors():
        if write is not None and not yes_erase_disk:
            raise ProvisionError(f"--write {write} erases that disk; add --yes-erase-disk")
        if not image.is_file():  # before a wheelhouse build that may take a minute
            raise ProvisionError(f"--image {image}: no such file")
        plan = _plan(values, ca, mqtt_auth, reissue, python, platform)
        out = out or files.default_out(image, device_id)
        report = get("image")(image=image, out=out, flavour=os_flavour).apply(plan)
        typer.echo(report.summary())
        if write is not None:
            raw = out
            if files.is_xz(out):
                raw = out.with_name(out.name[:-3])
                files.unpack(out, raw)
            size = disk.write_image(raw, write, confirmed=yes_erase_disk)
            typer.echo(f"wrote {size} bytes to {write}")


@app.command()
def rootfs(
    root: Annotated[Path, typer.Option(help="A mounted root filesystem (the SD card's rootfs).")],
    device_id: DeviceId,
    ca: CaDir = None,
    hostname: Hostname = None,
    user: User = "pi",
    password_hash: PasswordHash = None,
    ssh_key: SshKey = None,
    wifi_ssid: WifiSsid = None,
    wifi_psk: WifiPsk = None,
    wifi_country: WifiCountry = None,
    coordinator: Coordinator = None,
    insecure: Insecure = False,
    mqtt: Mqtt = None,
    mqtt_auth: MqttAuth = None,
    wheelhouse: Wheelhouse = None,
    from_index: FromIndex = False,
    index_url: IndexUrl = None,
    package: Package = "orchard-fl[agent,train]",
    python: Python = "3.11",
    platform: Platform = "aarch64",
    config: Config = None,
    timezone: Timezone = None,
    reissue: Reissue = False,
) -> None:
    """Apply the plan to a mounted root directory."""
    values = {k: v for k, v in locals().items() if k not in _NOT_OPTIONS}
    from provisioning.targets import get

    with errors():
        if not (root / "etc").is_dir():  # before a wheelhouse build that may take a minute
            raise ProvisionError(f"{root} does not look like a root filesystem (no etc/)")
        plan = _plan(values, ca, mqtt_auth, reissue, python, platform)
        typer.echo(get("rootfs")(root=root).apply(plan).summary())


@app.command()
def ssh(
    host: Annotated[str, typer.Option(help="user@board (keys or an ssh agent; no prompts).")],
    device_id: DeviceId,
    port: Annotated[int | None, typer.Option(help="SSH port.")] = None,
    sudo: Annotated[bool | None, typer.Option(help="Use sudo (default: unless root).")] = None,
    ca: CaDir = None,
    hostname: Hostname = None,
    user: User = "pi",
    password_hash: PasswordHash = None,
    ssh_key: SshKey = None,
    wifi_ssid: WifiSsid = None,
    wifi_psk: WifiPsk = None,
    wifi_country: WifiCountry = None,
    coordinator: Coordinator = None,
    insecure: Insecure = False,
    mqtt: Mqtt = None,
    mqtt_auth: MqttAuth = None,
    wheelhouse: Wheelhouse = None,
    from_index: FromIndex = False,
    index_url: IndexUrl = None,
    package: Package = "orchard-fl[agent,train]",
    python: Python = "3.11",
    platform: Platform = "aarch64",
    config: Config = None,
    timezone: Timezone = None,
    reissue: Reissue = False,
) -> None:
    """Apply the plan to a running board over SSH (a second run changes nothing)."""
    values = {k: v for k, v in locals().items() if k not in _NOT_OPTIONS}
    from provisioning.targets import get

    with errors():
        plan = _plan(values, ca, mqtt_auth, reissue, python, platform)
        typer.echo(get("ssh")(host=host, port=port, sudo=sudo).apply(plan).summary())


_NOT_OPTIONS = {
    "image",
    "out",
    "os_flavour",
    "write",
    "yes_erase_disk",
    "root",
    "host",
    "port",
    "sudo",
    "ca",
    "mqtt_auth",
    "reissue",
    "python",
    "platform",
}


@app.command("wheelhouse")
def wheelhouse_command(
    out: Annotated[
        Path, typer.Option(help="Where to build it (a wheelhouse there is replaced).")
    ] = Path("wheelhouse"),
    python: Python = "3.11",
    platform: Platform = "aarch64",
    extras: Annotated[
        str, typer.Option(help="Orchard's extras, comma-separated; '' for none.")
    ] = "agent,train",
    project: Annotated[
        Path | None, typer.Option(help="Orchard's source tree (default: this one).")
    ] = None,
    check: Annotated[bool, typer.Option("--check", help="Only verify --out, offline.")] = False,
) -> None:
    """Orchard's wheel and every dependency as wheels for the board, for offline installs."""
    from provisioning import wheelcheck, wheelhouse
    from provisioning.errors import InvalidOption

    names = tuple(e.strip() for e in extras.split(",") if e.strip())
    with errors():
        for name in names:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
                raise InvalidOption("extras", extras, "comma-separated names such as agent,train")
        if not check:
            wheelhouse.build(out, python, platform, names, project=project, progress=say)
        checked = wheelcheck.verify(out, python, platform, names)
        requirement = f"orchard-fl[{','.join(names)}]" if names else "orchard-fl"
        typer.echo(
            f"{out}: {len(checked.used)} wheels ({checked.size() / 1e6:.1f} MB) verified for "
            f"{checked.target}.\nOn the board: pip install --no-index --find-links {out} "
            f"'{requirement}'; or pass --wheelhouse {out} to image, rootfs or ssh."
        )


@app.command()
def version() -> None:
    """Print the provisioning tool's version."""
    from importlib.metadata import version as dist_version

    typer.echo(f"orchard-provision {dist_version('orchard-fl')}")


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Orchard provisioning."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)


def main() -> None:
    app()
