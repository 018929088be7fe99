"""``orchard-coordinator rollout ...``: queue rollout requests, show the rollout.

Registered by ``coordinator/cli.py``. The running coordinator (``orchard-coordinator run``)
owns the controller: these commands write a request into the rollout store (``[rollout]
path``, by default ``rollout.sqlite`` beside the device registry), the controller acts on it
within ``[rollout] tick_s`` and records the result, which the command waits for (``--wait``,
10 s by default; 0 queues and returns). A request queued while no coordinator runs is acted on
when one starts. ``status`` reads the store and the registry directly.

It lives beside ``fleet_cli.py`` rather than in ``coordinator/rollout/``: it reads
``coordinator.toml`` (``coordinator.config``), which itself imports the rollout's settings,
and the parts of a package may not import each other in a cycle (tests/test_layers.py).

Exit codes: 0 done (or queued), 1 refused, 2 a wrong option, 78 a wrong coordinator.toml.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import typer

from coordinator.errors import ConfigError, CoordinatorError, InvalidConfig
from coordinator.health.registry import Registry
from coordinator.health.settings import RegistrySettings
from coordinator.rollout.settings import RolloutSettings, parse_duration, parse_percent
from coordinator.rollout.store import Action, Request, RolloutStore

CONFIG_ERROR = 78

app = typer.Typer(
    help="Deliver models and run canary rollouts (docs/rollout.md).", no_args_is_help=True
)


@dataclass(frozen=True)
class Place:
    """Where the running coordinator keeps the rollout store and the registry."""

    store: Path
    registry: Path
    registry_settings: RegistrySettings
    settings: RolloutSettings


def locate(config: Path) -> Place:
    """From ``coordinator.toml`` (its defaults when the file does not exist)."""
    from coordinator.config import load_or_defaults

    cfg = load_or_defaults(config)
    registry = cfg.health.registry.resolve_path(cfg.runs_dir)
    return Place(cfg.rollout_path, registry, cfg.health.registry, cfg.rollout)


_CONFIG = typer.Option(Path("coordinator.toml"), "--config", "-c", help="coordinator.toml")
_WAIT = typer.Option(
    10.0, "--wait", min=0.0, help="Seconds to wait for the running coordinator to act (0: queue)."
)


@app.command()
def start(
    run: str = typer.Option(..., "--run", help="The run id (runs/<run-id>/)."),
    round_: int = typer.Option(..., "--round", min=0, help="Its round whose model to roll out."),
    canary: str | None = typer.Option(
        None, "--canary", help="Share of the online devices on the previous model, e.g. 20%."
    ),
    devices: str | None = typer.Option(None, "--devices", help="Exactly these devices: a,b."),
    soak: str | None = typer.Option(None, "--soak", help="How long the canary serves: 10m."),
    min_labels: int | None = typer.Option(
        None, "--min-labels", min=0, help="Labelled canary predictions needed (0: none)."
    ),
    config: Path = _CONFIG,
    wait: float = _WAIT,
) -> None:
    """Start a canary: a few devices first, then promoted to all or rolled back by itself.

    The canary is compared with the devices still on the previous model (docs/rollout.md).
    """
    try:
        if canary is not None and devices is not None:
            raise ConfigError("devices", devices, "either --canary or --devices, not both")
        params: dict[str, Any] = {"run_id": run, "round": round_}
        if canary is not None:
            params["canary_pct"] = parse_percent(canary, "canary")
        if devices is not None:
            names = [d.strip() for d in devices.split(",") if d.strip()]
            if not names:
                raise ConfigError("devices", devices, "a comma-separated list of device ids")
            params["devices"] = names
        if soak is not None:
            params["soak_s"] = parse_duration(soak, "soak")
        if min_labels is not None:
            params["min_labels"] = min_labels
    except ConfigError as exc:
        _fail(str(exc), 2)
    _request(config, "start", params, wait, needs_active=False)


@app.command()
def deliver(
    run: str = typer.Option(..., "--run", help="The run id (runs/<run-id>/)."),
    round_: int = typer.Option(..., "--round", min=0, help="Its round whose model to deliver."),
    config: Path = _CONFIG,
    wait: float = _WAIT,
) -> None:
    """Ask every device to serve this round's model, no canary (e.g. the first model)."""
    _request(config, "deliver", {"run_id": run, "round": round_}, wait, needs_active=False)


@app.command()
def promote(config: Path = _CONFIG, wait: float = _WAIT) -> None:
    """Promote the active canary to every device now, whatever the policy says."""
    _request(config, "promote", {}, wait, needs_active=True)


@app.command()
def abort(config: Path = _CONFIG, wait: float = _WAIT) -> None:
    """Abort the active rollout: its canary devices go back to the previous model.

    With no active rollout, cancel the queued start and deliver requests.
    """
    place = _place(config)
    store = _open(place.store)
    try:
        if store.active() is None:
            queued = [r for r in store.pending() if r.action in ("start", "deliver")]
            if not queued:
                _fail("no rollout is active and no request is queued: nothing to abort", 1)
            with store.transaction() as tx:
                cancelled = [r.id for r in queued if tx.finish_request(r.id, "cancelled: abort")]
            typer.echo(f"cancelled queued request(s): {', '.join(f'#{i}' for i in cancelled)}")
            return
    finally:
        store.close()
    _request(config, "abort", {}, wait, needs_active=True)


@app.command()
def status(
    config: Path = _CONFIG,
    as_json: bool = typer.Option(False, "--json", help="The dashboard's GET /api/models."),
) -> None:
    """The rollout (stage, groups side by side, the decision and why) and every device."""
    from coordinator.dashboard.models_api import models_document
    from coordinator.rollout.render import render_status
    from coordinator.rollout.view import build_status

    place = _place(config)
    if not place.registry.exists():
        _fail(f"no device registry at {place.registry}: start `orchard-coordinator run` first", 2)
    store = _open(place.store) if place.store.exists() else None
    r = place.registry_settings
    try:
        registry = Registry(
            place.registry,
            stale_after_intervals=r.stale_after_intervals,
            default_interval_s=r.default_interval_s,
            retention_s=r.history_retention_h * 3600.0,
        )
        try:
            if as_json:
                typer.echo(json.dumps(models_document(registry, store), indent=2))
            else:
                typer.echo(render_status(build_status(store, registry)))
        finally:
            registry.close()
    except CoordinatorError as exc:
        _fail(f"error: {exc}", 2)
    finally:
        if store is not None:
            store.close()


def _request(
    config: Path, action: Action, params: dict[str, Any], wait: float, *, needs_active: bool
) -> None:
    place = _place(config)
    store = _open(place.store)
    try:
        active = store.active()
        if needs_active and active is None:
            _fail(f"no rollout is active: nothing to {action}", 1)
        if not needs_active and active is not None:
            _fail(
                f"rollout {active.id} of {active.version} is active ({active.stage}): "
                "promote or abort it first",
                1,
            )
        request = store.add_request(action, params, active.id if needs_active and active else None)
        done = _wait(store, request, wait)
    except CoordinatorError as exc:
        _fail(f"error: {exc}", 2)
    finally:
        store.close()
    if done is None or done.result is None:
        note = (
            f"no coordinator acted on it within {wait:g} s: is `orchard-coordinator run` up? "
            if wait
            else ""
        )
        typer.echo(
            f"queued {action} as request #{request.id}; {note}the running coordinator acts on "
            f"it within [rollout] tick_s ({place.settings.tick_s:g} s); see "
            "`orchard-coordinator rollout status`"
        )
        return
    if done.result.startswith(("refused", "cancelled")):
        _fail(f"request #{done.id} {action}: {done.result}", 1)
    typer.echo(f"request #{done.id} {action}: {done.result}")


def _wait(store: RolloutStore, request: Request, seconds: float) -> Request | None:
    """Poll the store until the controller recorded the request's result, or ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        seen = store.request(request.id)
        if seen is not None and seen.consumed is not None:
            return seen
        left = deadline - time.monotonic()
        if left <= 0:
            return seen
        time.sleep(min(0.2, left))


def _place(config: Path) -> Place:
    try:
        return locate(config)
    except InvalidConfig as exc:
        _fail(str(exc), CONFIG_ERROR)


def _open(path: Path) -> RolloutStore:
    try:
        return RolloutStore(path)
    except CoordinatorError as exc:
        _fail(f"error: {exc}", 2)


def _fail(message: str, code: int) -> NoReturn:
    typer.secho(message, fg="red", err=True)
    raise typer.Exit(code)
