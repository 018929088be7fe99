"""What the ``orchard-provision`` command modules share: error reporting and progress lines."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from provisioning.errors import ProvisionError


@contextmanager
def errors() -> Iterator[None]:
    """Turn a ``ProvisionError`` into ``error: ...`` in red on stderr and exit status 1."""
    try:
        yield
    except ProvisionError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


def say(message: str) -> None:
    """A progress line on stderr (stdout keeps the command's result)."""
    typer.echo(message, err=True)
