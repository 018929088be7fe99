"""The run's settings: ``[run]`` in coordinator.toml, Flower's run config, and back.

One frozen value object. The coordinator validates it when it loads the config, passes it to
``flwr run -c`` as Flower run-config (kebab-case keys, str/int/float/bool values), and the
ServerApp reads it back with :meth:`RunSettings.from_run_config`. The shipped FAB's
``pyproject.toml`` declares the same keys with the same defaults (a test keeps them equal).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import tomli_w

from coordinator.errors import ConfigError
from coordinator.federation.errors import InvalidRunConfig

logger = logging.getLogger(__name__)

STRATEGIES = ("fedavg", "fedprox", "fedadam", "fedyogi", "fedavgm", "fedtrimmedavg", "fedmedian")
QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")


@dataclass(frozen=True)
class RunSettings:
    num_server_rounds: int = 3
    strategy: str = "fedavg"
    fraction_train: float = 1.0
    fraction_evaluate: float = 1.0
    min_devices: int = 2
    round_timeout: float = 120.0
    wait_for_devices: float = 120.0
    local_epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 0.01
    proximal_mu: float = 0.1
    server_learning_rate: float = 1.0
    server_momentum: float = 0.9
    trim_beta: float = 0.2
    eta: float = 0.01
    eta_l: float = 0.01
    beta_1: float = 0.9
    beta_2: float = 0.99
    tau: float = 0.001
    model_spec: str = ""  # JSON of models.spec.ModelSpec
    model_name: str = ""
    quantization: str = "int8"
    out_dir: str = ""  # absolute; runs/<run-id>/ goes below it
    validation: str = ""  # CSV for central evaluation ("" = none)
    registry: str = ""  # the health registry's SQLite file ("" = no health-aware selection)
    max_temp_c: float = 80.0
    skip_throttled: bool = True
    min_free_memory_mb: int = 0
    max_failures_in_row: int = 3
    seed: int = 0
    # Privacy (docs/privacy.md). Central DP: Flower's server-side fixed clipping + Gaussian
    # noise on the aggregate, cumulative (epsilon, delta) from Flower's RDP accountant.
    central_dp: bool = False
    central_dp_noise_multiplier: float = 1.0
    central_dp_clipping_norm: float = 1.0
    central_dp_delta: float = 1e-5
    # Local DP: Flower's LocalDpMod on each device's train reply.
    local_dp: bool = False
    local_dp_clipping_norm: float = 1.0
    local_dp_sensitivity: float = 1.0
    local_dp_epsilon: float = 1.0
    local_dp_delta: float = 1e-5
    # SecAgg+ (Flower's SecAggPlusWorkflow + secaggplus_mod). Shares and threshold: a number
    # in (0, 1] is a fraction (of the sampled devices, of the shares); above 1 a count.
    secure_aggregation: bool = False
    secagg_num_shares: float = 1.0
    secagg_reconstruction_threshold: float = 0.67
    secagg_clipping_range: float = 8.0
    secagg_max_weight: float = 1000.0

    def __post_init__(self) -> None:
        errors: list[str] = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            key = f.name
            want = _TYPES[f.type if isinstance(f.type, str) else f.type.__name__]
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
                value = float(value)
            if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
                errors.append(str(ConfigError(f"run.{key}", value, _NAMES[want])))
        if not errors:
            errors += self._ranges()
        if errors:
            raise InvalidRunConfig(errors)

    def _ranges(self) -> list[str]:
        bad: list[str] = []

        def need(ok: bool, key: str, value: Any, expected: str) -> None:
            if not ok:
                bad.append(str(ConfigError(f"run.{key.replace('-', '_')}", value, expected)))

        need(
            self.num_server_rounds >= 1,
            "num-server-rounds",
            self.num_server_rounds,
            "an integer >= 1",
        )
        need(
            self.strategy in STRATEGIES,
            "strategy",
            self.strategy,
            f"one of {', '.join(STRATEGIES)}",
        )
        need(
            0 < self.fraction_train <= 1,
            "fraction-train",
            self.fraction_train,
            "a number in (0, 1]",
        )
        need(
            0 <= self.fraction_evaluate <= 1,
            "fraction-evaluate",
            self.fraction_evaluate,
            "a number in [0, 1]",
        )
        need(self.min_devices >= 1, "min-devices", self.min_devices, "an integer >= 1")
        need(
            self.round_timeout > 0,
            "round-timeout",
            self.round_timeout,
            "a positive number of seconds",
        )
        need(
            self.wait_for_devices > 0,
            "wait-for-devices",
            self.wait_for_devices,
            "a positive number of seconds",
        )
        need(self.local_epochs >= 1, "local-epochs", self.local_epochs, "an integer >= 1")
        need(self.batch_size >= 1, "batch-size", self.batch_size, "an integer >= 1")
        need(
            0 < self.learning_rate <= 10, "learning-rate", self.learning_rate, "a number in (0, 10]"
        )
        need(self.proximal_mu >= 0, "proximal-mu", self.proximal_mu, "a number >= 0")
        need(0 <= self.trim_beta < 0.5, "trim-beta", self.trim_beta, "a number in [0, 0.5)")
        need(
            self.quantization in QUANTIZATIONS,
            "quantization",
            self.quantization,
            f"one of {', '.join(QUANTIZATIONS)}",
        )
        bad += self._privacy_ranges()
        if self.model_spec:
            try:
                json.loads(self.model_spec)
            except ValueError:
                bad.append(
                    str(ConfigError("run.model_spec", self.model_spec[:40], "a JSON object"))
                )
        return bad

    @property
    def private(self) -> bool:
        """True when any privacy option is on (statistics are then fixed by the coordinator)."""
        return self.central_dp or self.local_dp or self.secure_aggregation

    def _privacy_ranges(self) -> list[str]:
        bad: list[str] = []

        def need(ok: bool, key: str, expected: str) -> None:
            if not ok:
                value = getattr(self, key.replace("-", "_"))
                bad.append(str(ConfigError(f"run.{key.replace('-', '_')}", value, expected)))

        need(self.central_dp_noise_multiplier > 0, "central-dp-noise-multiplier", "a number > 0")
        for key in ("central-dp-clipping-norm", "local-dp-clipping-norm", "local-dp-epsilon"):
            need(getattr(self, key.replace("-", "_")) > 0, key, "a number > 0")
        need(self.local_dp_sensitivity >= 0, "local-dp-sensitivity", "a number >= 0")
        for key in ("central-dp-delta", "local-dp-delta"):
            need(0 < getattr(self, key.replace("-", "_")) < 1, key, "a number in (0, 1)")
        for key in ("secagg-num-shares", "secagg-reconstruction-threshold"):
            v = getattr(self, key.replace("-", "_"))
            need(
                0 < v <= 1 or (v > 1 and v == int(v)),
                key,
                "a fraction in (0, 1] or a whole count above 1",
            )
        need(
            self.secagg_num_shares <= 1 or self.secagg_num_shares > 2,
            "secagg-num-shares",
            "a fraction in (0, 1] or a count of at least 3",
        )
        need(self.secagg_clipping_range > 0, "secagg-clipping-range", "a number > 0")
        need(self.secagg_max_weight > 0, "secagg-max-weight", "a number > 0")
        linear = ("fedavg", "fedprox")
        if self.central_dp:
            need(
                self.strategy in linear,
                "strategy",
                "fedavg or fedprox with central-dp (Flower's accountant needs FedAvg's mean)",
            )
        if self.secure_aggregation:
            need(
                self.strategy in linear,
                "strategy",
                "fedavg or fedprox with secure-aggregation (SecAgg+ computes a weighted mean)",
            )
            need(
                not self.central_dp,
                "central-dp",
                "false with secure-aggregation (server-side clipping needs each device's "
                "update, which SecAgg+ hides; use local-dp)",
            )
        if self.private:
            need(
                bool(self.validation),
                "validation",
                "a CSV path when central-dp, local-dp or secure-aggregation is on (the "
                "coordinator's own data fixes the normalisation statistics, so devices "
                "never send statistics of theirs)",
            )
        return bad

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], *, section: str = "run") -> RunSettings:
        """From ``coordinator.toml`` (``snake_case`` keys); every wrong key is reported.

        The ``kebab-case`` spelling of Flower's run config (``num-server-rounds``) is still
        read, with a warning that names the key to write instead.
        """
        fields = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        errors: list[str] = []
        for key, value in table.items():
            name = key.replace("-", "_")
            if name not in fields:
                close = [f for f in sorted(fields) if name in f] or difflib.get_close_matches(
                    name, fields, n=1
                )
                hint = f"a known key (did you mean {close[0]!r}?)" if close else _known()
                errors.append(str(ConfigError(f"{section}.{key}", value, hint)))
                continue
            if name != key:
                logger.warning(
                    "%s.%s: the old spelling; write %s.%s (coordinator.toml keys are snake_case)",
                    section,
                    key,
                    section,
                    name,
                )
            values[name] = value
        try:
            settings = cls(**values)
        except InvalidRunConfig as exc:
            raise InvalidRunConfig(errors + exc.errors) from None
        if errors:
            raise InvalidRunConfig(errors)
        return settings

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> RunSettings:
        """From Flower's run config (kebab-case); keys that are not ours are ignored."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(
            **{
                k.replace("-", "_"): v
                for k, v in run_config.items()
                if k.replace("-", "_") in fields
            }
        )

    def to_run_config(self) -> dict[str, str | int | float | bool]:
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> RunSettings:
        return dataclasses.replace(self, **changes)


_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}
_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _known() -> str:
    names = ", ".join(f.name for f in dataclasses.fields(RunSettings))
    return f"one of {names}"


def to_toml(settings: RunSettings) -> str:
    """Run config as a TOML file for ``flwr run -c FILE.toml`` (values may hold any text)."""
    return tomli_w.dumps(settings.to_run_config())
