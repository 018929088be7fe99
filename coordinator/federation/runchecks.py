"""What a valid :class:`~coordinator.federation.runconfig.RunSettings` is: types, then ranges.

Every wrong value is reported at once, each naming its key as written in coordinator.toml
(``run.central_dp.noise_multiplier``), the value and what was expected.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from coordinator.errors import ConfigError

if TYPE_CHECKING:
    from coordinator.federation.runconfig import RunSettings

STRATEGIES = ("fedavg", "fedprox", "fedadam", "fedyogi", "fedavgm", "fedtrimmedavg", "fedmedian")
QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}
_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
LINEAR = ("fedavg", "fedprox")


def types(leaves: Iterable[tuple[str, str, Any, str, Any]]) -> list[str]:
    """Each value of the type its field declares; an integer where a number is wanted is
    made a float in place (the settings are frozen: this runs in ``__post_init__``)."""
    errors: list[str] = []
    for dotted, _, value, type_name, owner in leaves:
        want = _TYPES[type_name]
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(owner, dotted.rsplit(".", 1)[-1], float(value))
            continue
        if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
            errors.append(str(ConfigError(f"run.{dotted}", value, _NAMES[want])))
    return errors


def ranges(s: RunSettings) -> list[str]:
    bad: list[str] = []

    def need(ok: bool, key: str, value: Any, expected: str) -> None:
        if not ok:
            bad.append(str(ConfigError(f"run.{key}", value, expected)))

    need(s.num_server_rounds >= 1, "num_server_rounds", s.num_server_rounds, "an integer >= 1")
    need(s.strategy in STRATEGIES, "strategy", s.strategy, f"one of {', '.join(STRATEGIES)}")
    need(0 < s.fraction_train <= 1, "fraction_train", s.fraction_train, "a number in (0, 1]")
    need(
        0 <= s.fraction_evaluate <= 1,
        "fraction_evaluate",
        s.fraction_evaluate,
        "a number in [0, 1]",
    )
    need(s.min_devices >= 1, "min_devices", s.min_devices, "an integer >= 1")
    seconds = "a positive number of seconds"
    need(s.round_timeout > 0, "round_timeout", s.round_timeout, seconds)
    need(s.wait_for_devices > 0, "wait_for_devices", s.wait_for_devices, seconds)
    need(s.local_epochs >= 1, "local_epochs", s.local_epochs, "an integer >= 1")
    need(s.batch_size >= 1, "batch_size", s.batch_size, "an integer >= 1")
    need(0 < s.learning_rate <= 10, "learning_rate", s.learning_rate, "a number in (0, 10]")
    need(
        s.quantization in QUANTIZATIONS,
        "quantization",
        s.quantization,
        f"one of {', '.join(QUANTIZATIONS)}",
    )
    o = s.strategy_options
    need(o.proximal_mu >= 0, "strategy_options.proximal_mu", o.proximal_mu, "a number >= 0")
    need(0 <= o.trim_beta < 0.5, "strategy_options.trim_beta", o.trim_beta, "a number in [0, 0.5)")
    if s.model_spec:
        try:
            json.loads(s.model_spec)
        except ValueError:
            need(False, "model_spec", s.model_spec[:40], "a JSON object")
    return bad + _privacy(s)


def _privacy(s: RunSettings) -> list[str]:
    bad: list[str] = []

    def need(ok: bool, key: str, expected: str) -> None:
        if not ok:
            group, _, name = key.partition(".")
            value = getattr(getattr(s, group), name) if name else getattr(s, group)
            bad.append(str(ConfigError(f"run.{key}", value, expected)))

    c, loc, sa = s.central_dp, s.local_dp, s.secure_aggregation
    need(c.noise_multiplier > 0, "central_dp.noise_multiplier", "a number > 0")
    need(c.clipping_norm > 0, "central_dp.clipping_norm", "a number > 0")
    need(loc.clipping_norm > 0, "local_dp.clipping_norm", "a number > 0")
    need(loc.epsilon > 0, "local_dp.epsilon", "a number > 0")
    need(loc.sensitivity >= 0, "local_dp.sensitivity", "a number >= 0")
    need(0 < c.delta < 1, "central_dp.delta", "a number in (0, 1)")
    need(0 < loc.delta < 1, "local_dp.delta", "a number in (0, 1)")
    for name in ("num_shares", "reconstruction_threshold"):
        v = getattr(sa, name)
        need(
            0 < v <= 1 or (v > 1 and v == int(v)),
            f"secure_aggregation.{name}",
            "a fraction in (0, 1] or a whole count above 1",
        )
    need(
        sa.num_shares <= 1 or sa.num_shares > 2,
        "secure_aggregation.num_shares",
        "a fraction in (0, 1] or a count of at least 3",
    )
    need(sa.clipping_range > 0, "secure_aggregation.clipping_range", "a number > 0")
    need(sa.max_weight > 0, "secure_aggregation.max_weight", "a number > 0")
    if c.enabled:
        need(
            s.strategy in LINEAR,
            "strategy",
            "fedavg or fedprox with central_dp (Flower's accountant needs FedAvg's mean)",
        )
    if sa.enabled:
        need(
            s.strategy in LINEAR,
            "strategy",
            "fedavg or fedprox with secure_aggregation (SecAgg+ computes a weighted mean)",
        )
        need(
            not c.enabled,
            "central_dp.enabled",
            "false with secure_aggregation (server-side clipping needs each device's "
            "update, which SecAgg+ hides; use local_dp)",
        )
    if s.private:
        need(
            bool(s.validation),
            "validation",
            "a CSV path when central_dp, local_dp or secure_aggregation is on (the "
            "coordinator's own data fixes the normalisation statistics, so devices "
            "never send statistics of theirs)",
        )
    return bad
