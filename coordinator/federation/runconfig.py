"""The run's settings: ``[run]`` in coordinator.toml, Flower's run config, and back.

One frozen value object with grouped sections::

    [run]                         rounds, devices, timeouts, local training, the model
    [run.strategy_options]        FedProx, FedAvgM, FedTrimmedAvg, FedAdam/FedYogi parameters
    [run.central_dp]              server-side clipping + noise (docs/privacy.md)
    [run.local_dp]                LocalDpMod on each device
    [run.secure_aggregation]      SecAgg+

The coordinator validates it when it loads the config (runchecks.py: every wrong value at
once), passes it to ``flwr run -c`` as Flower run config, and the ServerApp and the devices
read it back. Flower's run config is flat (kebab-case, str/int/float/bool values), so each
grouped field has one flat name (``central_dp.noise_multiplier`` is
``central-dp-noise-multiplier``); the FAB's ``pyproject.toml`` is generated from these
defaults (fab.py), the one source of them.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import tomli_w

from coordinator.errors import ConfigError
from coordinator.federation import runchecks
from coordinator.federation.errors import InvalidRunConfig

logger = logging.getLogger(__name__)

STRATEGIES = runchecks.STRATEGIES
QUANTIZATIONS = runchecks.QUANTIZATIONS


@dataclass(frozen=True)
class StrategyOptions:
    """``[run.strategy_options]``: the parameters of the non-FedAvg strategies."""

    proximal_mu: float = 0.1  # fedprox (sent to the devices)
    server_learning_rate: float = 1.0  # fedavgm
    server_momentum: float = 0.9  # fedavgm
    trim_beta: float = 0.2  # fedtrimmedavg
    eta: float = 0.01  # fedadam, fedyogi
    eta_l: float = 0.01
    beta_1: float = 0.9
    beta_2: float = 0.99
    tau: float = 0.001


@dataclass(frozen=True)
class CentralDpSettings:
    """``[run.central_dp]``: Flower's server-side fixed clipping and Gaussian noise on the
    aggregate; the cumulative (epsilon, delta) comes from Flower's RDP accountant."""

    enabled: bool = False
    noise_multiplier: float = 1.0
    clipping_norm: float = 1.0
    delta: float = 1e-5


@dataclass(frozen=True)
class LocalDpSettings:
    """``[run.local_dp]``: Flower's LocalDpMod on each device's train reply."""

    enabled: bool = False
    clipping_norm: float = 1.0
    sensitivity: float = 1.0
    epsilon: float = 1.0
    delta: float = 1e-5


@dataclass(frozen=True)
class SecAggSettings:
    """``[run.secure_aggregation]``: Flower's SecAggPlusWorkflow and secaggplus_mod. Shares and
    threshold: a number in (0, 1] is a fraction (of the sampled devices, of the shares); above
    1 a count."""

    enabled: bool = False
    num_shares: float = 1.0
    reconstruction_threshold: float = 0.67
    clipping_range: float = 8.0
    max_weight: float = 1000.0


# group -> (its type, the prefix of its fields' flat names; ``enabled`` is the group's name)
GROUPS: dict[str, tuple[type, str]] = {
    "strategy_options": (StrategyOptions, ""),
    "central_dp": (CentralDpSettings, "central_dp"),
    "local_dp": (LocalDpSettings, "local_dp"),
    "secure_aggregation": (SecAggSettings, "secagg"),
}


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
    model_spec: str = ""  # JSON of models.spec.ModelSpec
    model_name: str = ""
    quantization: str = "int8"
    out_dir: str = ""  # absolute; runs/<run-id>/ goes below it
    validation: str = ""  # CSV for central evaluation ("" = none)
    # The health registry's SQLite file ("" = no health-aware selection) and the gates the
    # ServerApp applies with it: `orchard-coordinator run` fills them from [selection].
    registry: str = ""
    max_temp_c: float = 80.0
    skip_throttled: bool = True
    min_free_memory_mb: int = 0
    max_failures_in_row: int = 3
    seed: int = 0
    strategy_options: StrategyOptions = field(default_factory=StrategyOptions)
    central_dp: CentralDpSettings = field(default_factory=CentralDpSettings)
    local_dp: LocalDpSettings = field(default_factory=LocalDpSettings)
    secure_aggregation: SecAggSettings = field(default_factory=SecAggSettings)

    def __post_init__(self) -> None:
        errors = runchecks.types(self.leaves())
        if not errors:
            errors = runchecks.ranges(self)
        if errors:
            raise InvalidRunConfig(errors)

    @property
    def private(self) -> bool:
        """True when any privacy option is on (statistics are then fixed by the coordinator)."""
        return self.central_dp.enabled or self.local_dp.enabled or self.secure_aggregation.enabled

    def leaves(self) -> Iterator[tuple[str, str, Any, str, Any]]:
        """``(dotted key, flat name, value, type name, owner)`` of every setting."""
        for f in dataclasses.fields(self):
            if f.name in GROUPS:
                group = getattr(self, f.name)
                for g in dataclasses.fields(group):
                    yield (
                        f"{f.name}.{g.name}",
                        _flat(f.name, g.name),
                        getattr(group, g.name),
                        str(g.type),
                        group,
                    )
            else:
                yield f.name, f.name, getattr(self, f.name), str(f.type), self

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], *, section: str = "run") -> RunSettings:
        """From ``coordinator.toml`` (``snake_case`` keys, grouped tables); every wrong key is
        reported. The old flat spellings (``central_dp_noise_multiplier``, and the kebab-case
        of Flower's run config) are still read, with a warning that names the key to write."""
        flat: dict[str, Any] = {}
        errors: list[str] = []
        for key, value in table.items():
            name = key.replace("-", "_")
            if name in GROUPS and isinstance(value, Mapping):
                group_type = GROUPS[name][0]
                known = {g.name for g in dataclasses.fields(group_type)}
                for sub, sub_value in value.items():
                    sub_name = sub.replace("-", "_")
                    if sub_name not in known:
                        where = f"{section}.{name}.{sub}"
                        errors.append(str(ConfigError(where, sub_value, _hint(sub_name, known))))
                        continue
                    flat[_flat(name, sub_name)] = sub_value
                continue
            if name not in FLAT:
                top_level = {f.name for f in dataclasses.fields(cls)}
                errors.append(str(ConfigError(f"{section}.{key}", value, _hint(name, top_level))))
                continue
            dotted = _dotted(name)
            if key != dotted:
                logger.warning(
                    "%s.%s: the old spelling; write %s.%s", section, key, section, dotted
                )
            flat[name] = value
        try:
            settings = cls().replace(**flat)
        except InvalidRunConfig as exc:
            raise InvalidRunConfig(errors + exc.errors) from None
        if errors:
            raise InvalidRunConfig(errors)
        return settings

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> RunSettings:
        """From Flower's run config (flat kebab-case); keys that are not ours are ignored."""
        flat = {k.replace("-", "_"): v for k, v in run_config.items()}
        return cls().replace(**{k: v for k, v in flat.items() if k in FLAT})

    def to_run_config(self) -> dict[str, str | int | float | bool]:
        return {flat.replace("_", "-"): value for _, flat, value, _, _ in self.leaves()}

    def replace(self, **changes: Any) -> RunSettings:
        """A copy with ``changes``: top-level fields, whole groups, or flat names
        (``central_dp_noise_multiplier=0.5``, ``secure_aggregation=True``)."""
        top: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {}
        for name, value in changes.items():
            if name in GROUPS and isinstance(value, GROUPS[name][0]):
                top[name] = value
            elif name in FLAT and FLAT[name][0] is not None:
                group, sub = FLAT[name]
                nested.setdefault(str(group), {})[sub] = value
            else:
                top[name] = value  # an unknown name fails in dataclasses.replace
        for group, values in nested.items():
            top[group] = dataclasses.replace(top.get(group, getattr(self, group)), **values)
        return dataclasses.replace(self, **top)


def _flat(group: str, name: str) -> str:
    prefix = GROUPS[group][1]
    if not prefix:
        return name
    return group if name == "enabled" else f"{prefix}_{name}"


def _flat_names() -> dict[str, tuple[str | None, str]]:
    """Flat name -> (group or None, field name in it)."""
    out: dict[str, tuple[str | None, str]] = {}
    for dotted, flat, *_ in RunSettings().leaves():
        group, _, name = dotted.rpartition(".")
        out[flat] = (group or None, name)
    return out


FLAT = _flat_names()


def _dotted(flat: str) -> str:
    group, name = FLAT[flat]
    return name if group is None else f"{group}.{name}"


def _hint(name: str, known: set[str]) -> str:
    names = sorted(known)
    close = [k for k in names if name in k] or difflib.get_close_matches(name, names, n=1)
    if close:
        return f"a known key (did you mean {close[0]!r}?)"
    return f"one of {', '.join(names)}"


def to_toml(settings: RunSettings) -> str:
    """Run config as a TOML file for ``flwr run -c FILE.toml`` (values may hold any text)."""
    return tomli_w.dumps(settings.to_run_config())
