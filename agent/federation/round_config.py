"""What a device reads of a round: the run config's keys it uses and each message's config.

The coordinator's :class:`~coordinator.federation.runconfig.RunSettings` is the whole run
config (Flower's ``context.run_config``, kebab-case keys); :class:`DeviceRunConfig` is the
part a device uses, each field named as the setting it reads (a test keeps every field a
``RunSettings`` field). :class:`RoundConfig` is the ``ConfigRecord`` of a train or evaluate
message: the round number, FedProx's ``proximal-mu`` (set by Flower's strategy) and, in a
private run, the arrays the device must send back unchanged. The coordinator builds it with
:meth:`RoundConfig.encode`. Errors name the key, the value and what was expected.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.federation.messages import MessageSchemaError

SERVER_ROUND, PROXIMAL_MU, FROZEN_ARRAYS = "server-round", "proximal-mu", "frozen-arrays"


@dataclass(frozen=True)
class DeviceRunConfig:
    model_spec: Mapping[str, Any]
    local_epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 0.01
    quantization: str = "int8"
    model_name: str = ""

    @classmethod
    def decode(cls, run_config: Mapping[str, Any]) -> DeviceRunConfig:
        """From Flower's run config; keys a device does not use are ignored."""
        values = _fields(cls, run_config)
        try:
            spec = json.loads(values["model_spec"])
        except ValueError:
            spec = None
        if not isinstance(spec, dict):
            raise _error("model-spec", values["model_spec"], "a JSON object (a ModelSpec)")
        values["model_spec"] = spec
        return cls(**values)


@dataclass(frozen=True)
class LocalDp:
    """``local-dp-*``: the parameters of Flower's ``LocalDpMod`` on the train handler."""

    local_dp_clipping_norm: float = 1.0
    local_dp_sensitivity: float = 1.0
    local_dp_epsilon: float = 1.0
    local_dp_delta: float = 1e-5

    @classmethod
    def decode(cls, run_config: Mapping[str, Any]) -> LocalDp:
        return cls(**_fields(cls, run_config))


def _fields(kind: Any, run_config: Mapping[str, Any]) -> dict[str, Any]:
    """``kind``'s fields from the run config (kebab-case keys), type-checked."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(kind):
        key = f.name.replace("_", "-")
        if key not in run_config:
            if f.default is dataclasses.MISSING:
                raise _error(key, None, "a value (the coordinator sends every run setting)")
            continue
        values[f.name] = _typed(key, run_config[key], str(f.type))
    return values


@dataclass(frozen=True)
class RoundConfig:
    server_round: int = 0
    proximal_mu: float = 0.0
    frozen_arrays: tuple[int, ...] = ()

    def encode(self) -> dict[str, int | float | str]:
        """Legacy-safe scalars (SecAgg+'s workflow carries only those)."""
        out: dict[str, int | float | str] = {
            SERVER_ROUND: self.server_round,
            FROZEN_ARRAYS: ",".join(str(i) for i in self.frozen_arrays),
        }
        if self.proximal_mu:
            out[PROXIMAL_MU] = self.proximal_mu
        return out

    @classmethod
    def decode(cls, record: Mapping[str, Any], arrays: int) -> RoundConfig:
        """From a message's ``ConfigRecord``; ``arrays`` bounds the frozen indices."""
        rnd = record.get(SERVER_ROUND, 0)
        if isinstance(rnd, bool) or not isinstance(rnd, int | float) or rnd < 0:
            raise _error(SERVER_ROUND, rnd, "a round number")
        mu = record.get(PROXIMAL_MU, 0.0)
        if isinstance(mu, bool) or not isinstance(mu, int | float) or mu < 0:
            raise _error(PROXIMAL_MU, mu, "a number >= 0")
        text = str(record.get(FROZEN_ARRAYS, "")).strip()
        try:
            frozen = tuple(int(part) for part in text.split(",")) if text else ()
        except ValueError:
            frozen = (-1,)
        if any(not 0 <= i < arrays for i in frozen):
            raise _error(FROZEN_ARRAYS, record.get(FROZEN_ARRAYS), f"indices below {arrays}")
        return cls(int(rnd), float(mu), frozen)


_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "Mapping[str, Any]": (str,),  # model-spec travels as JSON text
}


def _typed(key: str, value: Any, annotation: str) -> Any:
    types = _TYPES[annotation]
    ok = isinstance(value, types) and (bool in types or not isinstance(value, bool))
    if not ok:
        names = {"int": "an integer", "float": "a number", "bool": "true or false"}
        raise _error(key, value, names.get(annotation, "a string"))
    return float(value) if annotation == "float" else value


def _error(key: str, value: Any, expected: str) -> MessageSchemaError:
    return MessageSchemaError(f"expected {key} to be {expected}. Received: {key}={value!r:.80}")
