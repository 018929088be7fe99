"""``orchard-agent``: the always-on board process. Never imports TensorFlow.

Exit codes are in ``agent.exit_codes`` (78 = configuration error, not restarted by systemd).
"""

from __future__ import annotations

import logging
import platform
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from agent import exit_codes

if TYPE_CHECKING:
    from agent.config import AgentConfig

app = typer.Typer(help="Orchard agent: runs on the board.", no_args_is_help=True)
DEFAULT_CONFIG = Path("/etc/orchard/agent.toml")


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    """Orchard agent."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _load_or_exit(path: Path) -> AgentConfig:
    """Load the config, or print every problem and exit with the config-error code."""
    from agent import config
    from agent.errors import InvalidConfig

    try:
        return config.load(path)
    except InvalidConfig as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(exit_codes.CONFIG_ERROR) from exc


@app.command("check-config")
def check_config(
    path: Path = typer.Argument(DEFAULT_CONFIG, help="The agent.toml to check."),
) -> None:
    """Validate a config file; name every wrong key, its value and what was expected."""
    cfg = _load_or_exit(path)
    sensors = ", ".join(f"{s.name} ({s.driver})" for s in cfg.sensors)
    typer.echo(f"{path}: OK — device {cfg.device_id}, sensors: {sensors}")
    typer.echo(
        f"  store {cfg.store.path}, models {cfg.models.dir}, http {cfg.http.host}:{cfg.http.port}"
    )


@app.command()
def run(
    config_path: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="agent.toml"),
) -> None:
    """Run the agent: sample sensors, keep the store, serve predictions (until SIGTERM)."""
    from agent.errors import AgentError
    from agent.runner import AgentRunner

    cfg = _load_or_exit(config_path)
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        AgentRunner(cfg).run(stop)
    except AgentError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(exit_codes.RUNTIME_FAILURE) from exc


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


def main() -> None:
    app()
