"""``orchard-provision ca ...``: the fleet CA and the inventory of issued devices.

Registered as the ``ca`` group by provisioning/cli.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from provisioning.cli_common import errors

ca_app = typer.Typer(help="The fleet CA and the inventory of issued devices.", no_args_is_help=True)


@ca_app.command("init")
def ca_init(
    directory: Annotated[Path, typer.Option("--dir", help="Where the CA lives (kept private).")],
    name: Annotated[str, typer.Option(help="The CA's common name.")] = "Orchard fleet CA",
) -> None:
    """Create the fleet CA."""
    from provisioning.ca import FleetCA

    with errors():
        ca = FleetCA.init(directory, name)
        typer.echo(f"created {ca.dir / 'ca.pem'} (private key {ca.dir / 'ca.key'}, mode 0600)")


@ca_app.command("server-cert")
def ca_server_cert(
    directory: Annotated[Path, typer.Option("--dir", help="The CA directory.")],
    host: Annotated[list[str], typer.Option(help="DNS name or IP of the coordinator (repeat).")],
    name: Annotated[str, typer.Option(help="File name and common name.")] = "coordinator",
) -> None:
    """Issue the coordinator's TLS certificate (SuperLink --ssl-*, Mosquitto listener)."""
    from provisioning.ca import FleetCA

    with errors():
        cert, key = FleetCA.open(directory).server_cert(name, tuple(host))
        typer.echo(f"certificate {cert}\nprivate key {key}\nCA {directory / 'ca.pem'}")


@ca_app.command("client-cert")
def ca_client_cert(
    directory: Annotated[Path, typer.Option("--dir", help="The CA directory.")],
    name: Annotated[
        str, typer.Option(help="Common name (= MQTT user name) and file name.")
    ] = "coordinator",
) -> None:
    """Issue a client certificate that is not a device's (the coordinator's MQTT ingest)."""
    from provisioning.ca import FleetCA

    with errors():
        cert, key = FleetCA.open(directory).client_cert(name)
        typer.echo(f"certificate {cert}\nprivate key {key}\nCA {directory / 'ca.pem'}")


@ca_app.command("signer-cert")
def ca_signer_cert(
    name: Annotated[str, typer.Argument(help="File name and common name, e.g. coordinator.")],
    directory: Annotated[Path, typer.Option("--dir", help="The CA directory.")],
    reissue: Annotated[
        bool, typer.Option(help="Replace a certificate that is still valid (new fingerprint).")
    ] = False,
) -> None:
    """Issue the coordinator's code-signing certificate: it signs the models it delivers."""
    from provisioning.ca import FleetCA

    with errors():
        cert, key = FleetCA.open(directory).signer_cert(name, reissue=reissue)
        typer.echo(
            f"certificate {cert}\nprivate key {key}\n"
            f'coordinator.toml [delivery]: signing_cert = "{cert}", signing_key = "{key}"'
        )


@ca_app.command("refresh-crl")
def ca_refresh_crl(
    directory: Annotated[Path, typer.Option("--dir", help="The CA directory.")],
) -> None:
    """Re-sign crl.pem: Mosquitto refuses every board once it is past its next update."""
    from provisioning.ca import FleetCA

    with errors():
        expires = FleetCA.open(directory).refresh_crl()
        typer.echo(f"{directory / 'crl.pem'} valid until {expires:%Y-%m-%d}; reload Mosquitto")


@ca_app.command("list")
def ca_list(directory: Annotated[Path, typer.Option("--dir", help="The CA directory.")]) -> None:
    """The inventory: every issued device, its MQTT kind and SuperNode key fingerprint."""
    from provisioning.ca import FleetCA

    with errors():
        for record in FleetCA.open(directory).records():
            node = record.get("supernode")
            fp = node.get("fingerprint") if isinstance(node, dict) else "-"
            mqtt = record.get("mqtt")
            kind = mqtt.get("kind") if isinstance(mqtt, dict) else "-"
            state = f"revoked {record['revoked_at']}" if record.get("revoked_at") else "active"
            typer.echo(f"{record['device_id']}\t{state}\tmqtt={kind}\tsupernode={fp}")


@ca_app.command("revoke")
def ca_revoke(
    device_id: Annotated[str, typer.Argument(help="The device to revoke.")],
    directory: Annotated[Path, typer.Option("--dir", help="The CA directory.")],
) -> None:
    """Revoke a device: CRL entry, password removed, secrets deleted, SuperNode key dropped."""
    from provisioning.ca import FleetCA

    with errors():
        FleetCA.open(directory).revoke(device_id)
        typer.echo(
            f"revoked {device_id}: reload Mosquitto (crlfile/password_file) and run "
            "`flwr supernode unregister <node-id>` on the coordinator"
        )
