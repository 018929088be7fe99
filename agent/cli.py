"""``orchard-agent``: the always-on board process. Never imports TensorFlow."""

from __future__ import annotations

import platform

import typer

app = typer.Typer(help="Orchard agent: runs on the board.", no_args_is_help=True)


@app.command()
def version() -> None:
    """Print the agent's version and the inference runtime it would use."""
    from importlib.metadata import version as dist_version

    from models.errors import RuntimeUnavailableError
    from models.runtime import backend

    try:
        rt = backend()
        runtime = f"{rt.name} {rt.version}"
    except RuntimeUnavailableError as exc:
        runtime = f"none ({exc})"
    typer.echo(f"orchard-agent {dist_version('orchard-fl')} (Python {platform.python_version()})")
    typer.echo(f"inference runtime: {runtime}")


@app.callback()
def _main() -> None:
    """Orchard agent."""


def main() -> None:
    app()
