"""What the coordinator knows of a device's remote configuration: commands joined with acks.

A command's ``outcome`` is the status of its latest ack (``applied``, ``restarting``,
``rejected``, ``refused``, ``rolled_back``), or, with no ack: ``superseded`` (a newer command
replaced it on the retained topic before it expired and before the board answered),
``expired`` (its ``expires`` passed) or ``pending``; ``not sent`` (stored, the broker never
confirmed it) instead of ``pending``, or before the other two: ``not sent (expired)``. An
answer for a ``seq`` the store does not hold (a deleted store, another coordinator) adds
``(unknown command)``.

:func:`device_config` is ``config show``: the effective remote patch the board acknowledged as
applied (the applied commands' patches folded in ``seq`` order, removals honoured), its last
``config_version`` (from its latest ack that carries one, or its birth when that is newer: the
agent reports the version it connected with) and the commands still on their way.
:func:`history` is ``config history``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from agent.remote.command import Command
from coordinator.health.records import DeviceRecord
from coordinator.health.registry import AckRecord
from coordinator.remote.patch import Patch, effective, render
from coordinator.remote.store import SentCommand

FINAL: Final = ("applied", "rejected", "refused", "rolled_back")
FAILED: Final = ("rejected", "refused", "rolled_back")
WAITING: Final = ("pending", "restarting", "updating", "not sent")


def describe(command: Command) -> str:
    """A command in one line: its patch, or the release an update command installs."""
    if command.kind == "update" and command.update is not None:
        return f"software update to {command.update.version}"
    return render(command.patch)


@dataclass(frozen=True)
class CommandView:
    seq: int
    sent: SentCommand | None  # None: an ack for a command this store never issued
    acks: tuple[AckRecord, ...]
    outcome: str

    @property
    def last_ack(self) -> AckRecord | None:
        return self.acks[-1] if self.acks else None

    @property
    def final(self) -> bool:
        return self.outcome in FINAL

    def to_dict(self) -> dict[str, Any]:
        c = self.sent.command if self.sent else None
        return {
            "seq": self.seq,
            "outcome": self.outcome,
            "issued": c.issued if c else None,
            "expires": c.expires if c else None,
            "published": self.sent.published if self.sent else None,
            "topic": self.sent.topic if self.sent else None,
            "patch": c.patch if c else None,
            "signer": c.signer if c else None,
            "acks": [
                {
                    "status": a.status,
                    "ts": a.ts,
                    "received_at": a.received_at,
                    "config_version": a.config_version,
                    "live": a.live,
                    "errors": list(a.errors),
                }
                for a in self.acks
            ],
        }


def _latest(acks: Sequence[AckRecord]) -> tuple[AckRecord, ...]:
    return tuple(sorted(acks, key=lambda a: (a.ts, a.received_at)))


def history(
    commands: Sequence[SentCommand], acks: Sequence[AckRecord], now: float | None = None
) -> list[CommandView]:
    """Every command and every answered ``seq``, oldest first, each with its outcome."""
    moment = time.time() if now is None else now
    by_seq: dict[int, list[AckRecord]] = {}
    for a in acks:
        by_seq.setdefault(a.seq, []).append(a)
    sent = {c.seq: c for c in commands}
    out = []
    for seq in sorted(set(sent) | set(by_seq)):
        answers = _latest(by_seq.get(seq, []))
        command = sent.get(seq)
        if answers:
            outcome = answers[-1].status
            if command is None:
                outcome += " (unknown command)"
        elif command is None:  # unreachable: a seq comes from a command or an answer
            continue
        else:
            replaced = [c.published for c in commands if c.seq > seq and c.published is not None]
            if replaced and min(replaced) < command.command.expires:
                outcome = "superseded"
            elif command.command.expires <= moment:
                outcome = "expired"
            else:
                outcome = "pending"
            if command.published is None:
                outcome = "not sent" if outcome == "pending" else f"not sent ({outcome})"
        out.append(CommandView(seq, command, answers, outcome))
    return out


@dataclass(frozen=True)
class DeviceConfig:
    device_id: str
    record: DeviceRecord | None  # None: the registry has not heard of it
    applied: Patch  # the effective remote patch (None: removed, the default runs)
    applied_seqs: tuple[int, ...]
    unknown_applied: tuple[int, ...]  # applied, but the store does not hold their patch
    config_version: str | None
    config_version_at: float | None  # the device's time of that ack or birth
    pending: tuple[CommandView, ...]
    config_version_source: str | None = None  # "ack" or "birth"

    def to_dict(self) -> dict[str, Any]:
        r = self.record
        return {
            "device_id": self.device_id,
            "fleet": r.fleet if r else None,
            "state": r.state if r else None,
            "config_version": self.config_version,
            "config_version_at": self.config_version_at,
            "config_version_source": self.config_version_source,
            "applied": self.applied,
            "applied_seqs": list(self.applied_seqs),
            "unknown_applied_seqs": list(self.unknown_applied),
            "pending": [v.to_dict() for v in self.pending],
        }


def device_config(
    device_id: str,
    record: DeviceRecord | None,
    commands: Sequence[SentCommand],
    acks: Sequence[AckRecord],
    now: float | None = None,
) -> DeviceConfig:
    views = history(commands, acks, now)
    applied = [v for v in views if v.outcome == "applied" and v.sent is not None]
    versioned = [a for a in _latest(acks) if a.config_version is not None]
    version = versioned[-1].config_version if versioned else None
    version_at = versioned[-1].ts if versioned else None
    source = "ack" if versioned else None
    birth = record.birth_doc if record is not None else None
    if birth is not None:  # the version the agent connected with, if newer (after a restart)
        born, born_at = birth.get("config_version"), birth.get("ts")
        at = float(born_at) if isinstance(born_at, int | float) else None
        if isinstance(born, str) and at is not None and (version_at is None or at > version_at):
            version, version_at, source = born, at, "birth"
    return DeviceConfig(
        device_id=device_id,
        record=record,
        applied=effective(v.sent.patch for v in applied if v.sent is not None),
        applied_seqs=tuple(v.seq for v in applied),
        unknown_applied=tuple(
            v.seq for v in views if v.sent is None and v.outcome.startswith("applied")
        ),
        config_version=version,
        config_version_at=version_at,
        config_version_source=source,
        pending=tuple(v for v in views if v.outcome in WAITING),
    )


# -- text ----------------------------------------------------------------------------------


def when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def answer_line(device_id: str, view: CommandView | None) -> str:
    """One device's outcome for ``config set --wait``."""
    ack = view.last_ack if view else None
    if view is None or ack is None:
        return f"{device_id}: no answer yet"
    if ack.status == "applied":
        how = "live" if ack.live else "after a restart"
        return f"{device_id}: applied ({how}; config_version {ack.config_version or '-'})"
    if ack.status == "restarting":
        return f"{device_id}: restarting (written; applied follows once the agent is healthy)"
    errors = "; ".join(ack.errors) or "no reason given"
    note = {
        "rejected": " (the old config keeps running)",
        "refused": " (nothing changed)",
        "rolled_back": " (the last good config runs)",
    }.get(ack.status, "")
    return f"{device_id}: {ack.status}{note}: {errors}"


def render_show(cfg: DeviceConfig) -> str:
    r = cfg.record
    where = (
        f"fleet {r.fleet}, {r.state}" if r and r.fleet else (r.state if r else "not in registry")
    )
    version = cfg.config_version or "-"
    reported = when(cfg.config_version_at)
    if cfg.config_version_source is not None:
        reported += f" in its {cfg.config_version_source}"
    lines = [f"{cfg.device_id} ({where}): config_version {version} (reported {reported})"]
    if cfg.applied:
        seqs = ", ".join(str(s) for s in cfg.applied_seqs)
        lines.append(f"applied remotely (seq {seqs}):")
        for key, value in cfg.applied.items():
            lines.append(f"  {key} = {value}" if value is not None else f"  {key} (removed)")
    else:
        lines.append("applied remotely: nothing (the provisioned agent.toml)")
    if cfg.unknown_applied:
        seqs = ", ".join(str(s) for s in cfg.unknown_applied)
        lines.append(f"  also applied: seq {seqs}, not in this command store (patch unknown)")
    if cfg.pending:
        lines.append("pending:")
        for v in cfg.pending:
            c = v.sent.command if v.sent else None
            expires = f", expires {when(c.expires)}" if c else ""
            patch = describe(c) if c else "?"
            lines.append(f"  seq {v.seq} {v.outcome}{expires}: {patch}")
    else:
        lines.append("pending: none")
    return "\n".join(lines)


def render_history(device_id: str, views: Sequence[CommandView]) -> str:
    if not views:
        return f"{device_id}: no command sent, no answer stored"
    lines = []
    for v in views:
        c = v.sent.command if v.sent else None
        head = f"seq {v.seq}  {when(c.issued if c else None)}  {v.outcome}"
        lines.append(f"{head}: {describe(c) if c else '(patch unknown)'}")
        for a in v.acks:
            detail = f"config_version {a.config_version}" if a.config_version else ""
            if a.status == "applied":
                detail += ", live" if a.live else ", after a restart"
            if a.errors:
                detail += ("; " if detail else "") + "; ".join(a.errors)
            lines.append(f"    {when(a.ts)}  {a.status}" + (f": {detail}" if detail else ""))
    return "\n".join(lines)
