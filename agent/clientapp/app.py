"""The thin ClientApp: gate, hand the round to the warm trainer, return its answer.

Flower starts a fresh process for every message, so this module imports no TensorFlow: it
checks the training budget gate, sends the global arrays and the round's config to the trainer
over its local socket, and replies with the trainer's arrays and declared metrics only
(:mod:`agent.federation.messages`). Any failure becomes an error reply with a code the
ServerApp counts as a failure; the round goes on without this device.

Privacy options (run config, docs/privacy.md) are Flower mods on the train handler only:
``secure-aggregation`` puts Flower's ``secaggplus_mod`` around it (the train phase then
arrives in Flower's legacy FitIns/FitRes layout, and the device sends its masked *update*,
trained minus global, so SecAgg+'s clipping range bounds the change, not the weights), and
``local-dp`` puts ``LocalDpMod`` inside that (it must not see evaluate messages). In a private
run the round config names ``frozen-arrays`` (the normalisation statistics the coordinator
fixed); they go back exactly as received, so no statistic of local readings leaves.

``--node-config`` keys: ``device-id`` and ``agent-config`` (absolute path of agent.toml);
optional ``sysfs-root`` (tests point it at a fake sysfs tree).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.clientapp.mod import LocalDpMod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
from flwr.compat.common import recorddict_compat as compat

from agent import config as agent_config
from agent.federation import gate, status, trainer_api, wire
from agent.federation.messages import ErrorCode, MessageSchemaError, check_metrics
from agent.federation.round_config import DeviceRunConfig, LocalDp, RoundConfig
from agent.federation.trainer_api import TrainerMessageError, TrainerRequest, TrainParams

logger = logging.getLogger(__name__)
# How long a caller whose trainer connection closed waits for the supervisor to record why:
# it waits up to 10 s for a killed trainer to die before it records (trainer_supervisor.py).
STOP_RECORDED_S = 15.0

app = ClientApp()


class RoundFailed(Exception):
    def __init__(self, code: ErrorCode, reason: str, outcome: str = "error") -> None:
        super().__init__(reason)
        self.code = code
        self.outcome = outcome


class RoundRefusedError(Exception):
    """The trainer refused a SecAgg+ train round (raised: ``secaggplus_mod`` has no error path)."""


LEGACY_IN = "fitins.parameters"  # Flower's legacy layout, used by the SecAgg+ workflow
LEGACY_OUT = "fitres.parameters"


def _run(context: Context) -> DeviceRunConfig:
    try:
        return DeviceRunConfig.decode(context.run_config)
    except MessageSchemaError as exc:
        raise RoundFailed(ErrorCode.BAD_REQUEST, f"run config: {exc}") from exc


def secure_aggregation(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Flower's ``secaggplus_mod`` when the run asks for SecAgg+; else a pass-through."""
    if context.run_config.get("secure-aggregation") is not True:
        return call_next(msg, context)
    return secaggplus_mod(msg, context, _as_update(call_next))


def _as_update(call_next: ClientAppCallable) -> ClientAppCallable:
    def send_update(msg: Message, context: Context) -> Message:
        out = call_next(msg, context)
        if out.has_error():  # secaggplus_mod has no error path: fail, the server drops us
            raise RoundRefusedError(out.error.reason)
        sent = msg.content.array_records[LEGACY_IN].to_numpy_ndarrays()
        trained = out.content.array_records[LEGACY_OUT].to_numpy_ndarrays()
        out.content[LEGACY_OUT] = ArrayRecord([t - g for t, g in zip(trained, sent, strict=True)])
        return out

    return send_update


def local_dp(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Flower's ``LocalDpMod`` (clip the update, add Gaussian noise) when the run asks."""
    if context.run_config.get("local-dp") is not True:
        return call_next(msg, context)
    dp = LocalDp.decode(context.run_config)
    mod = LocalDpMod(
        clipping_norm=dp.local_dp_clipping_norm,
        sensitivity=dp.local_dp_sensitivity,
        epsilon=dp.local_dp_epsilon,
        delta=dp.local_dp_delta,
    )
    return mod(msg, context, call_next)


@app.train(mods=[secure_aggregation, local_dp])
def train(msg: Message, context: Context) -> Message:
    if LEGACY_IN in msg.content.array_records:
        return _legacy_train(msg, context)
    return _handle("train", msg, context)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    return _handle("evaluate", msg, context)


def _legacy_train(msg: Message, context: Context) -> Message:
    record = msg.content.array_records[LEGACY_IN]
    round_cfg = msg.content.config_records.get("fitins.config") or ConfigRecord()
    try:
        metrics, arrays = _round("train", record.to_numpy_ndarrays(), round_cfg, context)
    except RoundFailed as exc:
        logger.warning("train round refused: %s", exc)
        return Message(Error(code=int(exc.code), reason=str(exc)), reply_to=msg)
    fitres = FitRes(
        Status(Code.OK, ""),
        ndarrays_to_parameters(arrays),
        int(metrics["num-examples"]),
        dict(metrics),
    )
    return Message(compat.fitres_to_recorddict(fitres, keep_input=False), reply_to=msg)


def _handle(kind: str, msg: Message, context: Context) -> Message:
    record = msg.content.array_records.get("arrays")
    arrays = record.to_numpy_ndarrays() if record is not None else []
    round_cfg = msg.content.config_records.get("config") or ConfigRecord()
    try:
        metrics, arrays = _round(kind, arrays, round_cfg, context)
    except RoundFailed as exc:
        logger.warning("%s round refused: %s", kind, exc)
        return Message(Error(code=int(exc.code), reason=str(exc)), reply_to=msg)
    values: dict[str, int | float | list[int] | list[float]] = dict(metrics)
    content = RecordDict({"metrics": MetricRecord(values)})
    if kind == "train":
        content["arrays"] = ArrayRecord(arrays)
    return Message(content, reply_to=msg)


def _round(
    kind: str, arrays: list[np.ndarray], round_cfg: ConfigRecord, context: Context
) -> tuple[dict[str, float], list[np.ndarray]]:
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

    run = _run(context)
    try:
        this = RoundConfig.decode(round_cfg, len(arrays))
    except MessageSchemaError as exc:
        raise RoundFailed(ErrorCode.BAD_REQUEST, f"round config: {exc}") from exc
    request = TrainerRequest(
        op="fit" if kind == "train" else "evaluate",
        run_id=str(context.run_id),
        round=this.server_round,
        spec=run.model_spec,
        train=TrainParams(run.local_epochs, run.batch_size, run.learning_rate, this.proximal_mu),
        quantization=run.quantization,
        model_name=run.model_name,
        personalize=cfg.federation.personalize,
    )
    frozen = this.frozen_arrays
    sent_at = time.time()
    try:
        reply, out = trainer_api.call(
            str(cfg.federation.trainer_socket),
            request,
            arrays,
            timeout=cfg.training.max_seconds + 120.0,
        )
    except TrainerMessageError as exc:
        raise RoundFailed(ErrorCode.TRAINER_FAILED, str(exc)) from exc
    except wire.WireError as exc:
        # Why the trainer went: the supervisor records a kill before it, or (trainer frozen
        # holding the status lock) right after; wait that long at most.
        after = status.stop_recorded(status_path, sent_at, STOP_RECORDED_S)
        if after.over_budget:
            raise RoundFailed(
                ErrorCode.OVER_BUDGET,
                f"trainer stopped over budget: {after.last_reason}",
                str(after.last_outcome),
            ) from exc
        raise RoundFailed(ErrorCode.TRAINER_FAILED, f"trainer: {exc}") from exc
    if not reply.ok:
        code = reply.code if reply.code is not None else ErrorCode.TRAINER_FAILED
        known = code in ErrorCode._value2member_map_
        raise RoundFailed(ErrorCode(code) if known else ErrorCode.TRAINER_FAILED, str(reply.error))
    try:
        metrics = check_metrics(kind, reply.metrics)
    except MessageSchemaError as exc:
        raise RoundFailed(ErrorCode.TRAINER_FAILED, str(exc)) from exc
    if kind == "train" and [a.shape for a in out] != [a.shape for a in arrays]:
        raise RoundFailed(ErrorCode.TRAINER_FAILED, "the trainer returned arrays of other shapes")
    for i in frozen if kind == "train" else ():
        out[i] = arrays[i]  # the coordinator's statistics, never ones of local readings
    return metrics, out
