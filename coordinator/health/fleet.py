"""The fleet table printed by ``orchard-coordinator fleet``.

DEVICE   STATE  TEMP    THROTTLED  MEMORY           MODEL  ROUND  P95     SEEN
pi-1     ready  51.2°C  -          41% (1.1 GB free) v3     7      0.8 ms  4 s ago
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from coordinator.health.records import DeviceRecord

COLUMNS = (
    "DEVICE", "STATE", "TEMP", "THROTTLED", "MEMORY", "AGENT", "MODEL", "ROUND", "P95", "SEEN",
)  # fmt: skip


def _temp(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}°C"


def _memory(row: dict[str, Any]) -> str:
    pct, free = row["memory_pct"], row["memory_available_mb"]
    if pct is None:
        return "-"
    free_s = f"{free / 1024:.1f} GB" if free >= 1024 else f"{free:.0f} MB"
    return f"{pct:.0f}% ({free_s} free)"


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def _round(row: dict[str, Any]) -> str:
    r = row["last_round"]
    if r is None:
        return "-"
    outcome = row["last_outcome"]
    return f"{r} ({outcome})" if outcome and outcome != "ok" else str(r)


def cells(rec: DeviceRecord) -> list[str]:
    row = rec.summary()
    p95 = row["inference_p95_ms"]
    return [
        rec.device_id if rec.fleet is None else f"{rec.fleet}/{rec.device_id}",
        rec.state,
        _temp(row["cpu_temp_c"]),
        ",".join(row["throttled"]) or "-",
        _memory(row),
        row["agent_version"] or "-",
        row["model_version"] or "-",
        _round(row),
        "-" if p95 is None else f"{p95:.1f} ms",
        _ago(rec.silent_s),
    ]


def render_table(records: Iterable[DeviceRecord]) -> str:
    """A plain-text table, one line per device, columns padded to fit."""
    rows: list[Sequence[str]] = [COLUMNS, *(cells(r) for r in records)]
    if len(rows) == 1:
        return "no devices have reported yet"
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return "\n".join(lines)


def render_counts(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    parts = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    return f"{total} device(s): {parts}" if total else "0 devices"
