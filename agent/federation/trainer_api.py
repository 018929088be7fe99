"""What the thin ClientApp asks the trainer and what it answers: the frames' JSON headers.

:mod:`agent.federation.wire` carries a header and arrays over the trainer's unix socket; this
module owns the headers. A request names an ``op`` (``fit`` a round, ``evaluate`` and export the
global model, or ``ping``), the run and round, the model spec and the training parameters; a
reply is ``ok`` with the declared metrics (:mod:`agent.federation.messages`) or an error code
and message. ``decode`` raises :class:`TrainerMessageError` naming the field, the value and
what was expected; field names are spelled here only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.errors import AgentError
from agent.federation import wire

VERSION = 1
OPS = ("fit", "evaluate", "ping")


class TrainerMessageError(AgentError):
    """A trainer request or reply header that does not fit its type."""


@dataclass(frozen=True)
class TrainParams:
    """The run's local training parameters (run config ``local-epochs`` etc.)."""

    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 1e-3
    mu: float = 0.0  # FedProx's proximal term; 0: plain local SGD


@dataclass(frozen=True)
class TrainerRequest:
    op: str
    run_id: str = "local"
    round: int = 0
    spec: Mapping[str, Any] | None = None  # models.spec.ModelSpec.to_dict(); None for ping
    train: TrainParams = field(default_factory=TrainParams)
    quantization: str = "int8"
    model_name: str = ""
    personalize: bool = False
    version: int = VERSION

    def encode(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def decode(cls, header: Mapping[str, Any]) -> TrainerRequest:
        doc = _object("request", header)
        op = doc.get("op")
        if op not in OPS:
            raise _error("request", "op", op, f"one of {list(OPS)}")
        spec = doc.get("spec")
        if op != "ping" and not isinstance(spec, Mapping):
            raise _error("request", "spec", spec, "a model spec object")
        return cls(
            op=op,
            run_id=_typed("request", doc, "run_id", str, "a string"),
            round=_count("request", doc, "round"),
            spec=spec if isinstance(spec, Mapping) else None,
            train=_params(doc.get("train", {})),
            quantization=_typed("request", doc, "quantization", str, "a string"),
            model_name=_typed("request", doc, "model_name", str, "a string"),
            personalize=_typed("request", doc, "personalize", bool, "true or false"),
        )


@dataclass(frozen=True)
class TrainerReply:
    ok: bool
    metrics: Mapping[str, float] = field(default_factory=dict)
    code: int | None = None  # an ErrorCode when not ok
    error: str | None = None
    pid_rss_mb: float | None = None  # ping: the trainer's peak RSS
    version: int = VERSION

    @classmethod
    def failed(cls, code: int, error: str) -> TrainerReply:
        return cls(ok=False, code=int(code), error=error)

    def encode(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "metrics": dict(self.metrics)}

    @classmethod
    def decode(cls, header: Mapping[str, Any]) -> TrainerReply:
        doc = _object("reply", header)
        ok = doc.get("ok")
        if not isinstance(ok, bool):
            raise _error("reply", "ok", ok, "true or false")
        metrics = doc.get("metrics", {})
        if not isinstance(metrics, Mapping) or not all(
            isinstance(k, str) and _is_number(v) for k, v in metrics.items()
        ):
            raise _error("reply", "metrics", metrics, "an object of numbers")
        code = doc.get("code")
        if not ok and not (isinstance(code, int) and not isinstance(code, bool)):
            raise _error("reply", "code", code, "an error code with ok=false")
        error = doc.get("error")
        if error is not None and not isinstance(error, str):
            raise _error("reply", "error", error, "a string or null")
        rss = doc.get("pid_rss_mb")
        if rss is not None and not _is_number(rss):
            raise _error("reply", "pid_rss_mb", rss, "a number or null")
        return cls(ok, dict(metrics), code, error, None if rss is None else float(rss))


def call(
    path: str,
    request: TrainerRequest,
    arrays: Sequence[np.ndarray] = (),
    *,
    timeout: float,
    connect_timeout: float = 30.0,
) -> tuple[TrainerReply, list[np.ndarray]]:
    """Send ``request`` to the trainer at ``path``; its decoded reply and arrays.

    Raises :class:`~agent.federation.wire.WireError` (no trainer, connection lost, timeout) or
    :class:`TrainerMessageError` (a reply that does not fit :class:`TrainerReply`).
    """
    header, out = wire.call(
        path, request.encode(), arrays, timeout=timeout, connect_timeout=connect_timeout
    )
    return TrainerReply.decode(header), out


def _object(kind: str, header: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(header, Mapping):
        raise TrainerMessageError(f"trainer {kind}: expected an object. Received: {header!r:.80}")
    version = header.get("version")
    if version != VERSION:
        raise _error(kind, "version", version, str(VERSION))
    return header


def _params(value: Any) -> TrainParams:
    if not isinstance(value, Mapping):
        raise _error("request", "train", value, "an object")
    defaults = TrainParams()
    return TrainParams(
        epochs=_count("request", value, "epochs", defaults.epochs, field_prefix="train."),
        batch_size=_count("request", value, "batch_size", defaults.batch_size, "train."),
        learning_rate=_number("request", value, "learning_rate", defaults.learning_rate),
        mu=_number("request", value, "mu", defaults.mu),
    )


def _typed(kind: str, doc: Mapping[str, Any], name: str, typ: type, expected: str) -> Any:
    default = {f.name: f.default for f in dataclasses.fields(TrainerRequest)}[name]
    value = doc.get(name, default)
    if not isinstance(value, typ) or (typ is not bool and isinstance(value, bool)):
        raise _error(kind, name, value, expected)
    return value


def _count(
    kind: str, doc: Mapping[str, Any], name: str, default: int = 0, field_prefix: str = ""
) -> int:
    value = doc.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _error(kind, field_prefix + name, value, "a non-negative integer")
    return value


def _number(kind: str, doc: Mapping[str, Any], name: str, default: float) -> float:
    value = doc.get(name, default)
    if not _is_number(value) or value < 0:
        raise _error(kind, f"train.{name}", value, "a finite number >= 0")
    return float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _error(kind: str, name: str, value: Any, expected: str) -> TrainerMessageError:
    return TrainerMessageError(
        f"trainer {kind}: expected {name} to be {expected}. Received: {name}={value!r:.80}"
    )
