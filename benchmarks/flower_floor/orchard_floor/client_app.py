"""The floor's ClientApp: one numpy step towards a per-node target, replies shaped as ours."""

from __future__ import annotations

import time

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()
EXAMPLES = 100


def _target(context: Context, like: np.ndarray) -> np.ndarray:
    seed = int(context.node_config.get("partition-id", context.node_id % 2**31))
    return np.random.default_rng(seed).normal(size=like.shape).astype(np.float32)


@app.train()
def train(msg: Message, context: Context) -> Message:
    started = time.perf_counter()
    arrays = msg.content.array_records["arrays"].to_numpy_ndarrays()
    new = [a - 0.1 * (a - _target(context, a)) for a in arrays]
    loss = float(np.mean([np.mean((a - _target(context, a)) ** 2) for a in new]))
    metrics = MetricRecord(
        {"num-examples": EXAMPLES, "loss": loss, "duration_s": time.perf_counter() - started}
    )
    return Message(RecordDict({"arrays": ArrayRecord(new), "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    arrays = msg.content.array_records["arrays"].to_numpy_ndarrays()
    loss = float(np.mean([np.mean((a - _target(context, a)) ** 2) for a in arrays]))
    return Message(
        RecordDict({"metrics": MetricRecord({"num-examples": EXAMPLES, "loss": loss})}),
        reply_to=msg,
    )
