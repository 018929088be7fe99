"""``orchard-coordinator rollout status`` as text: the rollout, both groups, every device."""

from __future__ import annotations

from collections.abc import Sequence

from coordinator.rollout.policy import GroupStats, duration
from coordinator.rollout.view import RolloutStatus, RolloutView


def render_status(status: RolloutStatus) -> str:
    lines = [f"fleet version: {status.current or '-'}"]
    if status.rollout is None:
        lines.append("no rollout yet")
    else:
        lines += _rollout(status.rollout, status.now)
    lines.append("")
    lines += _table(
        ("DEVICE", "ONLINE", "SERVING", "DESIRED", "DELIVERY", "GROUP"),
        [
            (
                d.device_id,
                "yes" if d.online else f"no ({d.state})",
                d.serving or "-",
                d.desired or "-",
                (d.delivery or "-") + (f": {d.delivery_error}" if d.delivery_error else ""),
                d.group or "-",
            )
            for d in status.devices
        ],
    )
    for r in status.pending:
        lines.append(f"pending request #{r.id}: {r.action} ({duration(status.now - r.at)} ago)")
    return "\n".join(lines)


def _rollout(view: RolloutView, now: float) -> list[str]:
    r = view.rollout
    source = f" from run {r.run_id} round {r.round}" if r.run_id else ""
    lines = [f"rollout {r.id} ({r.stage}): {r.version}{source}, replacing {r.previous or '-'}"]
    if r.kind == "canary":
        ends = r.soak_ends - now
        soak = f"ends in {duration(ends)}" if ends > 0 else "over"
        lines += [
            f"  started {duration(now - r.started)} ago; soak {duration(r.soak_s)} ({soak}); "
            f"deadline {duration(r.deadline_s)}; min labels {r.min_labels}",
            f"  canary ({len(r.canary)}): {', '.join(r.canary) or '-'}",
            f"  control ({len(r.control)}): {', '.join(r.control) or '-'}",
        ]
        rows = [
            _group("canary", view.comparison.canary),
            _group("control", view.comparison.control),
        ]
        header = ("GROUP", "DEVICES", "REPORTING", "PREDICTIONS", "ERRORS", "P99", "LABELS")
        lines += ["  " + line for line in _table((*header, "ACCURACY", "MAE"), rows)]
    if view.verdict is not None:
        lines.append(f"  now: {view.verdict.action}: {view.verdict.reason}")
    d = r.decision
    if d is not None:
        lines.append(f"  decision: {d.outcome} by {d.by} {duration(now - d.at)} ago: {d.reason}")
    if r.offline:
        lines.append(f"  offline when it finished (they get it on return): {', '.join(r.offline)}")
    return lines


def _group(name: str, g: GroupStats) -> tuple[str, ...]:
    return (
        name,
        str(g.devices),
        str(g.reporting),
        str(g.predictions),
        str(g.errors),
        "-" if g.p99_ms is None else f"{g.p99_ms:.1f} ms",
        str(g.labelled),
        "-" if g.accuracy is None else f"{g.accuracy:.2f}",
        "-" if g.mae is None else f"{g.mae:.3g}",
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
