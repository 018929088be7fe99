"""Part ``bytes``: bytes per round per device, from the runs' ``history.json``.

Made from what the ``overhead`` and ``accuracy`` parts measured (``results``); it starts
nothing itself.
"""

from __future__ import annotations

from typing import Any

from benchmarks.fedbench.common import median, table


def bytes_table(results: dict[str, Any]) -> str:
    rows = []
    if "overhead" in results:
        ours = results["overhead"]["orchard"]
        rows.append(_bytes_row(f"Orchard, {results['overhead']['devices']} devices", ours))
        floor = results["overhead"]["floor"]["history"]
        rows.append(
            _bytes_row(
                f"Flower floor, {results['overhead']['devices']} devices",
                floor,
                params=ours.get("model", {}).get("parameters"),
            )
        )
    for run in results.get("accuracy_runs", []):
        rows.append(_bytes_row(f"Orchard, {run['partition']} {run['strategy']}", run["history"]))
    return table(
        "Bytes per round per device (history.json)",
        [
            "run",
            "model float32 bytes",
            "down (coordinator -> device)",
            "up (device -> coordinator)",
            "down / model",
            "up / model",
        ],
        rows,
        "Down = the global arrays twice (train and evaluate messages) plus config; up = the "
        "trained arrays once plus the metric records. Counted by Flower's `count_bytes()` on "
        "the message records (payload, not HTTP framing).",
    )


def _bytes_row(name: str, history: dict[str, Any], params: int | None = None) -> list[Any]:
    rounds = history["rounds"]
    per_down = median([r["bytes_sent"] / max(1, _devices(r)) for r in rounds])
    per_up = median([r["bytes_received"] / max(1, _devices(r)) for r in rounds])
    params = params or int(history.get("model", {}).get("parameters", 0))
    model = params * 4
    ratio = (lambda v: f"{v / model:.2f}") if model else (lambda v: "-")
    return [
        name,
        f"{model:,}",
        f"{per_down:,.0f}",
        f"{per_up:,.0f}",
        ratio(per_down),
        ratio(per_up),
    ]


def _devices(record: dict[str, Any]) -> int:
    if "selected" in record:
        return len(record["selected"])
    return int(record.get("train_replies", 1))
