"""``orchard-coordinator fleet``: print the fleet table from the device registry.

Registered by ``coordinator/cli.py`` as ``orchard-coordinator fleet``.
It reads the registry file the running coordinator writes (SQLite WAL allows a concurrent
reader), so it works while ``orchard-coordinator run`` is up, and after it stopped.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from coordinator.errors import CoordinatorError
from coordinator.health.fleet import render_counts, render_table
from coordinator.health.registry import Registry
from coordinator.health.settings import RegistrySettings

DEFAULT_RUNS_DIR = Path("orchard-state/runs")  # coordinator.toml's default state_dir + /runs


def registry_location(
    config: Path, registry: Path | None, runs_dir: Path | None
) -> tuple[Path, RegistrySettings]:
    """The registry file and its settings: ``--registry``, else ``[registry] path``, else
    ``<runs dir>/fleet.sqlite`` (``--runs-dir``, else ``<state_dir>/runs`` of the config)."""
    settings, default_runs = RegistrySettings(), DEFAULT_RUNS_DIR
    if config.exists():
        from coordinator import config as coordinator_config

        cfg = coordinator_config.load(config)
        settings, default_runs = cfg.health.registry, cfg.runs_dir
    path = registry or settings.resolve_path(runs_dir or default_runs)
    return path, settings


def fleet(
    ctx: typer.Context,
    config: Path = typer.Option(
        Path("coordinator.toml"), "--config", "-c", help="coordinator.toml"
    ),
    registry: Path | None = typer.Option(
        None,
        "--registry",
        help="Registry file (default: [registry] path, else <runs>/fleet.sqlite).",
    ),
    runs_dir: Path | None = typer.Option(
        None, "--runs-dir", help="Where runs live (default: <state_dir>/runs from the config)."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per device, as a list."),
) -> None:
    """Show every device: state, temperature, throttling, memory, agent and model versions,
    last round, p95. `fleet update` rolls a new agent release out."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        path, r = registry_location(config, registry, runs_dir)
        if not path.exists():
            raise CoordinatorError(
                f"no device registry at {path}: start `orchard-coordinator run` first, "
                "or pass --registry"
            )
        reg = Registry(
            path,
            stale_after_intervals=r.stale_after_intervals,
            default_interval_s=r.default_interval_s,
            retention_s=r.history_retention_h * 3600.0,
        )
        try:
            records = reg.devices()
        finally:
            reg.close()
    except (CoordinatorError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps([rec.summary() for rec in records], indent=2))
        return
    typer.echo(render_table(records))
    counts: dict[str, int] = {}
    for rec in records:
        counts[rec.state] = counts.get(rec.state, 0) + 1
    typer.echo(render_counts(counts))
