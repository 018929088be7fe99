"""The floor's ServerApp: FedAvg rounds (train, then evaluate) timed the way Orchard times its own.

The loop is ``Strategy.start`` unrolled exactly as ``coordinator.federation.rounds`` does it,
minus everything Orchard adds (health selection, central evaluation, checkpoints, plots), so
the two rounds differ only in that work and in the ClientApp. Writes
``<out-dir>/<run-id>/history.json``: per round ``duration_s``, ``train_s``, ``evaluate_s``,
the replies and the bytes each way.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

app = ServerApp()


def _bytes(msg: Message) -> int:
    if msg.has_error() or not msg.has_content():
        return 0
    return sum(int(rec.count_bytes()) for rec in msg.content.values())


def _save(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _wait_for_nodes(grid: Grid, needed: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        have = len(list(grid.get_node_ids()))
        if have >= needed:
            return have
        if time.monotonic() >= deadline:
            raise RuntimeError(f"only {have} of {needed} SuperNodes connected after {timeout:g} s")
        time.sleep(0.5)


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    rounds = int(cfg["num-server-rounds"])
    needed = int(cfg["min-nodes"])
    timeout = float(cfg["round-timeout"])
    out = Path(str(cfg["out-dir"]) or "floor-runs") / str(context.run_id) / "history.json"
    history: dict[str, Any] = {"run_id": str(context.run_id), "status": "running", "rounds": []}
    _save(out, history)
    connected = _wait_for_nodes(grid, needed, float(cfg["wait-for-nodes"]))
    history["connected"] = connected
    fraction_evaluate = float(cfg["fraction-evaluate"])
    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=fraction_evaluate,
        min_train_nodes=needed,
        min_evaluate_nodes=needed if fraction_evaluate > 0 else 0,
        min_available_nodes=needed,
    )
    arrays = [np.zeros(int(cfg["array-size"]), np.float32)]
    for rnd in range(1, rounds + 1):
        started = time.monotonic()
        msgs = list(strategy.configure_train(rnd, ArrayRecord(arrays), ConfigRecord(), grid))
        sent = sum(_bytes(m) for m in msgs)
        replies = list(grid.send_and_receive(msgs, timeout=timeout))
        aggregated, train_metrics = strategy.aggregate_train(rnd, replies)
        if aggregated is not None:
            arrays = aggregated.to_numpy_ndarrays()
        received = sum(_bytes(m) for m in replies)
        train_s = time.monotonic() - started
        eval_msgs = list(
            strategy.configure_evaluate(rnd, ArrayRecord(arrays), ConfigRecord(), grid)
        )
        sent += sum(_bytes(m) for m in eval_msgs)
        eval_replies = list(grid.send_and_receive(eval_msgs, timeout=timeout)) if eval_msgs else []
        evaluated = strategy.aggregate_evaluate(rnd, eval_replies) if eval_replies else None
        received += sum(_bytes(m) for m in eval_replies)
        duration = time.monotonic() - started
        history["rounds"].append(
            {
                "round": rnd,
                "duration_s": round(duration, 3),
                "train_s": round(train_s, 3),
                "evaluate_s": round(duration - train_s, 3),
                "train_replies": len(replies),
                "evaluate_replies": len(eval_replies),
                "failures": sum(m.has_error() for m in [*replies, *eval_replies]),
                "train": None if train_metrics is None else dict(train_metrics),
                "evaluate": None if evaluated is None else dict(evaluated),
                "bytes_sent": sent,
                "bytes_received": received,
            }
        )
        _save(out, history)
    history["status"] = "completed"
    _save(out, history)
