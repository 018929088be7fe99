"""``orchard-coordinator fleet update``: roll a new agent release out to the boards.

    orchard-coordinator fleet update --wheelhouse DIR [--device ID ... | --group G|all]
        [--canary 1] [--batch 25%] [--abort-after 2] [--timeout 30m] [--expires 2h]

The wheelhouse (``orchard-provision wheelhouse``, with the new ``orchard-fl`` wheel) is
published as a signed release under ``<state_dir>/software/<version>/``, which the running
coordinator's artifact server serves (``/software/<version>/...``). Then one signed ``update``
command per device, batch after batch, through the broker of ``[mqtt]``; the answers come back
through the running coordinator's ingest (the registry), as for ``config set``.

Exit codes: 0 every device runs the release; 1 a device failed (rolled back, rejected, timed
out) or the rollout was aborted; 2 a wrong option (nothing sent); 78 a wrong coordinator.toml.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer

from agent.remote.command import SoftwareRef
from coordinator.errors import ConfigError, CoordinatorError
from coordinator.health.registry import Registry
from coordinator.remote import cli as remote_cli
from coordinator.remote.sender import Target
from coordinator.rollout.settings import parse_duration
from coordinator.software.release import publish, software_dir
from coordinator.software.rollout import Answer, Report, SoftwareRollout, plan
from orchard_common.signing import Signer

OK, FAILED, USAGE = 0, 1, 2


def update(
    wheelhouse: Path = typer.Option(
        ..., "--wheelhouse", help="The boards' wheelhouse with the new orchard-fl wheel."
    ),
    device: list[str] | None = typer.Option(None, "--device", help="A device id (repeatable)."),
    group: str | None = typer.Option(
        None, "--group", help="Every device of this fleet the registry knows, or 'all'."
    ),
    canary: int = typer.Option(1, "--canary", help="Devices updated alone first."),
    batch: str = typer.Option("25%", "--batch", help="Then batches of: 25% of the rest, or 5."),
    abort_after: int = typer.Option(
        2, "--abort-after", help="Stop sending batches after this many failures."
    ),
    timeout: str = typer.Option(
        "30m", "--timeout", help="How long a batch may take (download, install, health check)."
    ),
    expires: str = typer.Option("2h", "--expires", help="A board refuses the command after."),
    python: str | None = typer.Option(
        None, "--python", help="The boards' Python (default: from wheelhouse.json)."
    ),
    config: Path = typer.Option(
        Path("coordinator.toml"), "--config", "-c", help="coordinator.toml"
    ),
) -> None:
    """Install a new Orchard agent release on the boards, canary first, then in batches."""
    try:
        if (device is None) == (group is None):
            raise ConfigError("device", device or group, "either --device ID or --group G")
        if abort_after < 1:
            raise ConfigError("abort_after", abort_after, "a positive integer")
        batch_s = parse_duration(timeout, "timeout")
        expires_s = parse_duration(expires, "expires")
    except CoordinatorError as exc:
        _fail(str(exc), USAGE)
    place = remote_cli.place_or_exit(config)
    signer = remote_cli.signer_or_exit(place, config)
    registry = remote_cli.open_registry_or_exit(place)
    try:
        try:
            targets = remote_cli.select_targets(registry, device or [], group)
            batches = plan(targets, canary=canary, batch=batch)
            url = place.settings.delivery.url
            release = publish(
                wheelhouse, software_dir(place.settings.state_dir), signer, url, python=python
            )
        except CoordinatorError as exc:
            _fail(f"error: {exc}", USAGE)
        typer.echo(
            f"release {release.version}: {len(release.manifest.wheels)} wheels, "
            f"{release.manifest.total_bytes / 1e6:.1f} MB, signed by {signer.fingerprint[:16]}..., "
            f"served at {release.url}"
        )
        report = _roll_out(
            place, signer, registry, release.ref, batches, expires_s, batch_s, abort_after
        )
        typer.echo(_summary(report, registry))
    finally:
        registry.close()
    raise typer.Exit(OK if report.ok else FAILED)


def _roll_out(
    place: remote_cli.Place,
    signer: Signer,
    registry: Registry,
    ref: SoftwareRef,
    batches: list[list[Target]],
    expires_s: float,
    batch_s: float,
    abort_after: int,
) -> Report:
    def answer(device_id: str, seq: int) -> Answer | None:
        acks = registry.acks(device_id, [seq])
        if not acks:
            return None
        last = acks[-1]
        return Answer(last.status, last.errors[0] if last.errors else None)

    with remote_cli.connected_sender(place, signer, registry) as (sender, link):
        rollout = SoftwareRollout(
            sender,
            link.publish,
            answer,
            ref=ref,
            expires_s=expires_s,
            batch_timeout_s=batch_s,
            abort_after=abort_after,
            say=typer.echo,
        )
        return rollout.run(batches)


def _summary(report: Report, registry: Registry) -> str:
    counts: dict[str, int] = {}
    for o in report.outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    lines = [f"release {report.version}: {parts}"]
    if report.aborted:
        lines.append(f"aborted: {report.aborted}")
    versions: dict[str, list[str]] = {}
    for o in report.outcomes:
        rec = registry.device(o.device_id)
        running = rec.agent_version if rec is not None else None
        versions.setdefault(running or "unknown", []).append(o.device_id)
    for v, ids in sorted(versions.items()):
        lines.append(f"  agent {v}: {', '.join(ids)}")
    return "\n".join(lines)


def _fail(message: str, code: int) -> NoReturn:
    remote_cli.fail(message, code)
