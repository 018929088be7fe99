"""The thin ClientApp: gate, hand the round to the warm trainer, return its answer.

Flower starts a fresh process for every message, so this module imports no TensorFlow: it
checks the training budget gate, sends the global arrays and the round's config to the trainer
over its local socket, and replies with the trainer's arrays and declared metrics only
(:mod:`agent.federation.messages`). Any failure becomes an error reply with a code the
ServerApp counts as a failure; the round goes on without this device.

``--node-config`` keys: ``device-id`` and ``agent-config`` (absolute path of agent.toml);
optional ``sysfs-root`` (tests point it at a fake sysfs tree).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from agent import config as agent_config
from agent.federation import gate, status, wire
from agent.federation.messages import ErrorCode, MessageSchemaError, check_metrics

logger = logging.getLogger(__name__)

app = ClientApp()

# Run-config keys forwarded to the trainer (the FAB's pyproject declares them).
_TRAIN_KEYS = {
    "local-epochs": "epochs",
    "batch-size": "batch_size",
    "learning-rate": "learning_rate",
}


class RoundFailed(Exception):
    def __init__(self, code: ErrorCode, reason: str, outcome: str = "error") -> None:
        super().__init__(reason)
        self.code = code
        self.outcome = outcome


@app.train()
def train(msg: Message, context: Context) -> Message:
    return _handle("train", msg, context)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    return _handle("evaluate", msg, context)


def _handle(kind: str, msg: Message, context: Context) -> Message:
    try:
        metrics, arrays = _round(kind, msg, context)
    except RoundFailed as exc:
        logger.warning("%s round refused: %s", kind, exc)
        return Message(Error(code=int(exc.code), reason=str(exc)), reply_to=msg)
    values: dict[str, int | float | list[int] | list[float]] = dict(metrics)
    content = RecordDict({"metrics": MetricRecord(values)})
    if kind == "train":
        content["arrays"] = ArrayRecord(arrays)
    return Message(content, reply_to=msg)


def _round(kind: str, msg: Message, context: Context) -> tuple[dict[str, float], list[np.ndarray]]:
    node = context.node_config
    try:
        cfg = agent_config.load(Path(str(node["agent-config"])))
    except (KeyError, agent_config.InvalidConfig) as exc:
        raise RoundFailed(ErrorCode.BAD_REQUEST, f"node-config agent-config: {exc}") from exc
    status_path = status.path_for(cfg.state_dir)
    probe = gate.SysfsProbe(Path(str(node.get("sysfs-root", "/sys"))))
    decision = gate.check(cfg.training, probe)
    if not decision.open:
        status.update(status_path, last_outcome="gate_closed", last_reason=decision.reason)
        raise RoundFailed(ErrorCode.GATE_CLOSED, f"training budget gate closed: {decision.reason}")

    run = context.run_config
    round_cfg = msg.content.config_records.get("config") or ConfigRecord()
    rnd = int(_number(round_cfg.get("server-round", 0)))
    train = {local: run[key] for key, local in _TRAIN_KEYS.items() if key in run}
    train["mu"] = _number(round_cfg.get("proximal-mu", 0.0))
    header: dict[str, Any] = {
        "op": "fit" if kind == "train" else "evaluate",
        "run_id": str(context.run_id),
        "round": rnd,
        "spec": json.loads(str(run["model-spec"])),
        "train": train,
        "quantization": str(run.get("quantization", "int8")),
        "model_name": str(run.get("model-name", "")),
        "personalize": cfg.federation.personalize,
    }
    record = msg.content.array_records.get("arrays")
    arrays = record.to_numpy_ndarrays() if record is not None else []
    try:
        reply, out = wire.call(
            str(cfg.federation.trainer_socket),
            header,
            arrays,
            timeout=cfg.training.max_seconds + 120.0,
        )
    except wire.WireError as exc:
        after = status.read(status_path)
        if after.get("last_outcome") in ("over_memory", "over_time"):
            raise RoundFailed(
                ErrorCode.OVER_BUDGET,
                f"trainer stopped over budget: {after.get('last_reason')}",
                str(after["last_outcome"]),
            ) from exc
        raise RoundFailed(ErrorCode.TRAINER_FAILED, f"trainer: {exc}") from exc
    if not reply.get("ok"):
        code = int(reply.get("code", ErrorCode.TRAINER_FAILED))
        known = code in ErrorCode._value2member_map_
        raise RoundFailed(
            ErrorCode(code) if known else ErrorCode.TRAINER_FAILED, str(reply.get("error"))
        )
    try:
        metrics = check_metrics(kind, reply.get("metrics", {}))
    except MessageSchemaError as exc:
        raise RoundFailed(ErrorCode.TRAINER_FAILED, str(exc)) from exc
    if kind == "train" and [a.shape for a in out] != [a.shape for a in arrays]:
        raise RoundFailed(ErrorCode.TRAINER_FAILED, "the trainer returned arrays of other shapes")
    return metrics, out


def _number(value: object) -> float:
    """A numeric config value, or a ``BAD_REQUEST`` naming what came instead."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise RoundFailed(
        ErrorCode.BAD_REQUEST, f"expected a number in the round config. Received: {value!r}"
    )
