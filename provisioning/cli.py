"""``orchard-provision``: put the agent onto a board (image, rootfs or ssh)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Orchard provisioning: put the agent onto a Pi.", no_args_is_help=True)


@app.command()
def version() -> None:
    """Print the provisioning tool's version."""
    from importlib.metadata import version as dist_version

    typer.echo(f"orchard-provision {dist_version('orchard-fl')}")


@app.callback()
def _main() -> None:
    """Orchard provisioning."""


def main() -> None:
    app()
