"""``orchard-coordinator config ...``: change boards' ``agent.toml`` remotely, see what they did.

Registered by ``coordinator/cli.py``. ``set`` signs one command per device with ``[delivery]
signing_cert/signing_key``, stores it in the command history (``config.sqlite`` beside the
device registry) and publishes it retained (QoS 1) on the device's ``command`` topic through
the broker of ``[mqtt]``, connecting as its own MQTT client; ``--wait`` then reads the answers
the running coordinator's ingest stores in the registry. ``show`` and ``history`` read the two
files, while the coordinator runs or after it stopped (docs/remote-config.md, On the
coordinator).

It reads ``coordinator.toml`` (``coordinator.config``, imported lazily like the other CLIs);
nothing under ``coordinator/`` but ``cli.py`` imports this package, so that adds no cycle
(tests/test_layers.py).

Exit codes: 0 sent (with ``--wait``: every device applied it); 1 refused or failed (no signer,
the broker unreachable, a device rejected, refused or rolled it back); 2 a wrong option, key or
value (nothing sent); 3 with ``--wait``: a device has not given its final answer in time;
78 a wrong coordinator.toml.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn

import typer

from coordinator.errors import ConfigError, CoordinatorError, InvalidConfig
from coordinator.health.records import DeviceRecord
from coordinator.health.registry import AckRecord, Registry
from coordinator.remote import patch as patches
from coordinator.remote.errors import PatchError
from coordinator.remote.sender import ConfigSender, Issued, Target, signer_url
from coordinator.remote.store import CommandStore, SentCommand, default_path
from coordinator.remote.view import (
    FAILED,
    CommandView,
    answer_line,
    device_config,
    history,
    render_history,
    render_show,
    when,
)
from coordinator.rollout.settings import parse_duration
from orchard_common.signing import Signer

if TYPE_CHECKING:
    from coordinator.config import CoordinatorSettings
    from coordinator.remote.mqtt import CommandLink

OK, FAILED_EXIT, USAGE, NOT_YET, CONFIG_ERROR = 0, 1, 2, 3, 78
MAX_EXPIRES_S: Final = 30 * 24 * 3600.0
_POLL_S: Final = 0.2
ALL: Final = "all"

app = typer.Typer(
    help="Change boards' agent.toml remotely with signed commands (docs/remote-config.md).",
    no_args_is_help=True,
)


@dataclass(frozen=True)
class Place:
    """Where the running coordinator keeps the registry, and the command store beside it."""

    settings: CoordinatorSettings
    registry: Path
    store: Path


def locate(config: Path) -> Place:
    """From ``coordinator.toml`` (its defaults when the file does not exist)."""
    from coordinator.config import load_or_defaults

    cfg = load_or_defaults(config)
    registry = cfg.health.registry.resolve_path(cfg.runs_dir)
    return Place(cfg, registry, default_path(registry))


_CONFIG = typer.Option(Path("coordinator.toml"), "--config", "-c", help="coordinator.toml")
_JSON = typer.Option(False, "--json", help="JSON instead of text.")


@app.command("set")
def set_(
    assignments: list[str] | None = typer.Argument(
        None,
        metavar="KEY=VALUE...",
        help="TOML values: sampling.interval_s=5 training.allowed_hours=[6,22] "
        "labels.mqtt_topic='\"home/x\"'; KEY= removes the key.",
    ),
    device: list[str] | None = typer.Option(None, "--device", help="A device id (repeatable)."),
    group: str | None = typer.Option(
        None, "--group", help="Every device of this fleet the registry knows, or 'all'."
    ),
    unset: list[str] | None = typer.Option(
        None, "--unset", help="Remove KEY: back to its default (repeatable)."
    ),
    expires: str = typer.Option("1h", "--expires", help="A board refuses it after: 90s, 1h."),
    wait: str = typer.Option(
        "0", "--wait", help="How long to wait for the answers, e.g. 10s (0: do not wait)."
    ),
    config: Path = _CONFIG,
) -> None:
    """Send a signed configuration patch to one or more boards.

    Each KEY=VALUE is a dotted agent.toml key and one TOML value: sampling.interval_s=5
    'training.allowed_hours=[6,22]' labels.mqtt_topic='"home/x"'. KEY= removes the key.
    """
    try:
        if (device is None) == (group is None):
            raise ConfigError("device", device or group, "either --device ID or --group G")
        patch = patches.parse(assignments or (), unset or ())
        expires_s = parse_duration(expires, "expires")
        if not 0 < expires_s <= MAX_EXPIRES_S:
            raise ConfigError("expires", expires, "a duration in (0, 30 days]")
        wait_s = parse_duration(wait, "wait")
    except (PatchError, ConfigError) as exc:
        fail(str(exc), USAGE)
    place = place_or_exit(config)
    signer = signer_or_exit(place, config)
    registry = open_registry_or_exit(place)
    try:
        try:
            targets = select_targets(registry, device or [], group)
        except CoordinatorError as exc:
            fail(f"error: {exc}", USAGE)
        sent, failed = _send(place, signer, registry, targets, patch, expires_s)
        for device_id, why in failed.items():
            typer.secho(f"{device_id}: not sent: {why}", fg="red", err=True)
        if sent:
            typer.echo(
                f"sent {len(sent)} command(s), signed by {signer.fingerprint[:16]}...; "
                "answers: orchard-coordinator config history DEVICE"
            )
        code = _report(registry, sent, wait_s) if sent and wait_s > 0 else OK
    finally:
        registry.close()
    raise typer.Exit(FAILED_EXIT if failed else code)


def signer_or_exit(place: Place, config: Path) -> Signer:
    try:
        signer = place.settings.delivery.signer()
    except CoordinatorError as exc:
        fail(f"refusing to send unsigned commands: {exc}", FAILED_EXIT)
    if signer is None:
        fail(
            "refusing to send unsigned commands: boards accept only commands signed by the "
            "fleet CA's signer. Run `orchard-provision ca signer-cert coordinator` and set "
            f"[delivery] signing_cert and signing_key in {config}",
            FAILED_EXIT,
        )
    return signer


def select_targets(registry: Registry, devices: Sequence[str], group: str | None) -> list[Target]:
    known = {r.device_id: r for r in registry.devices()}
    if group is not None:
        chosen = [r for r in known.values() if group == ALL or r.fleet == group]
        if not chosen:
            fleets = sorted({r.fleet for r in known.values() if r.fleet})
            raise ConfigError(
                "group",
                group,
                f"'{ALL}' or a fleet with known devices ({', '.join(fleets) or 'none'})"
                if known
                else "a fleet with devices: the registry knows none yet",
            )
        return [Target(r.device_id, r.fleet) for r in chosen]
    missing = [d for d in devices if d not in known]
    if missing:
        raise ConfigError(
            "device",
            ", ".join(missing),
            f"devices the registry knows (it has heard from {len(known)}; "
            "see orchard-coordinator fleet)",
        )
    return [Target(d, known[d].fleet) for d in dict.fromkeys(devices)]


def _send(
    place: Place,
    signer: Signer,
    registry: Registry,
    targets: Sequence[Target],
    patch: patches.Patch,
    expires_s: float,
) -> tuple[list[SentCommand], dict[str, str]]:
    """Connect first (nothing is stored when the broker is out of reach), then per device:
    sign, store, publish; a device that fails is named and the others still go."""
    failed: dict[str, str] = {}
    sent: list[SentCommand] = []
    with connected_sender(place, signer, registry) as (sender, link):
        for target in targets:
            try:
                issued = sender.issue(target, patch, expires_s)
                done = sender.publish(issued.sent, link.publish)
            except CoordinatorError as exc:
                failed[target.device_id] = str(exc)
                continue
            sent.append(done)
            typer.echo(_sent_line(issued))
    return sent, failed


@contextmanager
def connected_sender(
    place: Place, signer: Signer, registry: Registry
) -> Iterator[tuple[ConfigSender, CommandLink]]:
    """The broker connection (first: nothing is stored when it is out of reach) and a sender
    over the command store; exits ``FAILED_EXIT`` naming why either cannot open."""
    from coordinator.remote.mqtt import CommandLink  # paho: only when sending

    try:
        link = CommandLink.connect(place.settings.health.mqtt)
    except CoordinatorError as exc:
        fail(f"nothing sent: {exc}", FAILED_EXIT)
    with link:
        try:
            store = CommandStore(place.store)
        except CoordinatorError as exc:
            fail(f"nothing sent: {exc}", FAILED_EXIT)
        with store:
            yield (
                ConfigSender(
                    store,
                    signer,
                    signer_url(place.settings.delivery.url),
                    answered=lambda d, s: bool(registry.acks(d, [s])),
                    prefix=place.settings.health.mqtt.topic_prefix,
                ),
                link,
            )


def _sent_line(issued: Issued) -> str:
    c = issued.sent.command
    line = f"{c.device_id}: seq {c.seq} on {issued.sent.topic}, expires {when(c.expires)}"
    if issued.carried:
        line += f"\n  carried forward (not read by the board yet): {patches.render(issued.carried)}"
    return line


def _report(registry: Registry, sent: Sequence[SentCommand], seconds: float) -> int:
    """Wait (bounded) for every device's final answer, print each; the exit code."""
    views = _wait(registry, sent, seconds)
    for s in sent:
        typer.echo(answer_line(s.device_id, views.get(s.device_id)))
    outcomes = [v.outcome if v else "pending" for v in views.values()]
    if any(o in FAILED for o in outcomes):
        return FAILED_EXIT
    if all(o == "applied" for o in outcomes):
        return OK
    typer.echo(
        f"no final answer from every device within {seconds:g} s: the command stays retained "
        "until it expires; the running coordinator stores the answers "
        "(orchard-coordinator config show DEVICE)"
    )
    return NOT_YET


def _wait(
    registry: Registry, sent: Sequence[SentCommand], seconds: float
) -> dict[str, CommandView | None]:
    deadline = time.monotonic() + seconds
    pause = threading.Event()
    while True:
        views: dict[str, CommandView | None] = {}
        for s in sent:
            found = [v for v in history([s], registry.acks(s.device_id, [s.seq])) if v.seq == s.seq]
            views[s.device_id] = found[0] if found and found[0].acks else None
        left = deadline - time.monotonic()
        if all(v is not None and v.final for v in views.values()) or left <= 0:
            return views
        pause.wait(min(_POLL_S, left))


@app.command()
def show(
    device_id: str = typer.Argument(..., help="The device id."),
    config: Path = _CONFIG,
    as_json: bool = _JSON,
) -> None:
    """What the board acknowledged: the remote patch it runs, its config_version, what waits."""
    place = place_or_exit(config)
    record, commands, acks = _known(place, device_id)
    cfg = device_config(device_id, record, commands, acks)
    typer.echo(json.dumps(cfg.to_dict(), indent=2) if as_json else render_show(cfg))


@app.command("history")
def history_(
    device_id: str = typer.Argument(..., help="The device id."),
    config: Path = _CONFIG,
    as_json: bool = _JSON,
) -> None:
    """Every command sent to the board, oldest first, with its answers."""
    place = place_or_exit(config)
    _record, commands, acks = _known(place, device_id)
    views = history(commands, acks)
    if as_json:
        doc = {"device_id": device_id, "commands": [v.to_dict() for v in views]}
        typer.echo(json.dumps(doc, indent=2))
    else:
        typer.echo(render_history(device_id, views))


def _known(
    place: Place, device_id: str
) -> tuple[DeviceRecord | None, list[SentCommand], list[AckRecord]]:
    registry = _registry(place)
    try:
        record = registry.device(device_id) if registry else None
        acks: list[AckRecord] = registry.acks(device_id) if registry else []
        commands: list[SentCommand] = []
        if place.store.exists():
            with CommandStore(place.store) as store:
                commands = store.commands(device_id)
    except CoordinatorError as exc:
        fail(f"error: {exc}", USAGE)
    finally:
        if registry is not None:
            registry.close()
    if record is None and not commands and not acks:
        fail(
            f"{device_id}: the registry ({place.registry}) has not heard of it and no command "
            f"was sent to it ({place.store})",
            USAGE,
        )
    return record, commands, acks


def open_registry_or_exit(place: Place) -> Registry:
    registry = _registry(place)
    if registry is None:
        fail(
            f"no device registry at {place.registry}: start `orchard-coordinator serve` "
            "(or run) so boards report first",
            USAGE,
        )
    return registry


def _registry(place: Place) -> Registry | None:
    """The registry if it exists (opening it must not create one)."""
    if not place.registry.exists():
        return None
    r = place.settings.health.registry
    try:
        return Registry(
            place.registry,
            stale_after_intervals=r.stale_after_intervals,
            default_interval_s=r.default_interval_s,
            retention_s=r.history_retention_h * 3600.0,
        )
    except CoordinatorError as exc:
        fail(f"error: {exc}", USAGE)


def place_or_exit(config: Path) -> Place:
    try:
        return locate(config)
    except InvalidConfig as exc:
        fail(str(exc), CONFIG_ERROR)


def fail(message: str, code: int) -> NoReturn:
    typer.secho(message, fg="red", err=True)
    raise typer.Exit(code)
