"""``[rollout]`` in coordinator.toml: how canaries are chosen, judged and decided.

Every key has a default (docs/rollout.md explains each); ``false`` switches a threshold off::

    [rollout]
    after_run = "deliver"      # after each run: "deliver" (every device), "canary" or "none"
    canary_pct = 20            # share of the online devices serving the previous model (>= 1)
    soak_s = 600               # the canary serves this long before it may be promoted
    min_labels = 30            # labelled canary predictions needed (0: labels not required)
    deadline_factor = 2.0      # still short of data after soak_s x this: roll back
    min_predictions = 20       # canary predictions before error rate, latency, drift are judged
    max_accuracy_drop = 0.05   # control accuracy - canary accuracy
    confidence_z = 3.0         # ... beyond the limit by this many standard errors
    max_mae_increase = 0.10    # canary MAE / control MAE - 1
    max_error_rate = 0.02      # canary errors / (predictions + errors)
    max_p99_ratio = 2.0        # canary p99 latency / control p99 latency
    p99_floor_ms = 10.0        # a canary p99 below this always passes the latency check
    max_drift_psi = 0.25       # canary class-distribution PSI against the previous version
    tick_s = 5                 # how often the running coordinator evaluates and acts
    # path = "rollout.sqlite"  # default: rollout.sqlite beside the device registry

``parse_duration`` and ``parse_percent`` read the CLI's ``--soak 10m`` and ``--canary 20%``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, cast

from coordinator.errors import ConfigError, InvalidConfig
from coordinator.options import Section

AfterRun = Literal["deliver", "canary", "none"]
AFTER_RUN: Final[tuple[str, ...]] = ("deliver", "canary", "none")
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?[hms])+$|^\d+(?:\.\d+)?$")
_PART = re.compile(r"(\d+(?:\.\d+)?)([hms]?)")
_UNIT_S: Final = {"h": 3600.0, "m": 60.0, "s": 1.0, "": 1.0}


@dataclass(frozen=True)
class Thresholds:
    """Limits a canary must stay within; ``None`` switches one off (docs/rollout.md)."""

    max_accuracy_drop: float | None = 0.05
    # the accuracy drop must exceed max_accuracy_drop by this many standard errors
    confidence_z: float = 3.0
    max_mae_increase: float | None = 0.10
    max_error_rate: float | None = 0.02
    max_p99_ratio: float | None = 2.0
    # a canary p99 under this is fast enough whatever the ratio: sub-millisecond latencies
    # vary several-fold with a cold cache right after a swap (measured: 2.0 vs 0.3 ms)
    p99_floor_ms: float = 10.0
    max_drift_psi: float | None = 0.25
    min_predictions: int = 20

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Thresholds:
        known = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @classmethod
    def from_section(cls, sec: Section) -> Thresholds:
        d = cls()
        return cls(
            max_accuracy_drop=sec.optional_float(
                "max_accuracy_drop", d.max_accuracy_drop, low=0.0, high=1.0
            ),
            confidence_z=sec.get_float("confidence_z", d.confidence_z, low=0.0),
            max_mae_increase=sec.optional_float("max_mae_increase", d.max_mae_increase, low=0.0),
            max_error_rate=sec.optional_float(
                "max_error_rate", d.max_error_rate, low=0.0, high=1.0
            ),
            max_p99_ratio=sec.optional_float("max_p99_ratio", d.max_p99_ratio, low=1.0),
            p99_floor_ms=sec.get_float("p99_floor_ms", d.p99_floor_ms, low=0.0),
            max_drift_psi=sec.optional_float("max_drift_psi", d.max_drift_psi, low=0.0),
            min_predictions=sec.get_int("min_predictions", d.min_predictions, low=0),
        )


@dataclass(frozen=True)
class RolloutSettings:
    after_run: AfterRun = "deliver"
    canary_pct: float = 20.0
    soak_s: float = 600.0
    min_labels: int = 30
    deadline_factor: float = 2.0
    tick_s: float = 5.0
    path: Path | None = None  # None: rollout.sqlite beside the device registry
    thresholds: Thresholds = field(default_factory=Thresholds)

    @classmethod
    def from_section(cls, sec: Section) -> RolloutSettings:
        d = cls()
        after_run = sec.get_str("after_run", d.after_run, choices=AFTER_RUN)
        canary_pct = sec.get_float("canary_pct", d.canary_pct, low=0.0, high=100.0)
        if canary_pct == 0:
            sec.fail("canary_pct", 0, "a percentage in (0, 100]")
            canary_pct = d.canary_pct
        path = sec.get_str("path", None)
        s = cls(
            after_run=cast(AfterRun, after_run),
            canary_pct=canary_pct,
            soak_s=sec.get_float("soak_s", d.soak_s, low=0.0),
            min_labels=sec.get_int("min_labels", d.min_labels, low=0),
            deadline_factor=sec.get_float("deadline_factor", d.deadline_factor, low=1.0),
            tick_s=sec.get_float("tick_s", d.tick_s, low=0.1, high=3600.0),
            path=Path(path).expanduser() if path else None,
            thresholds=Thresholds.from_section(sec),
        )
        sec.done()
        return s

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], source: str = "rollout") -> RolloutSettings:
        """From a ``[rollout]`` table alone; ``InvalidConfig`` lists every wrong key."""
        errors: list[str] = []
        settings = cls.from_section(Section("rollout", table, errors))
        if errors:
            raise InvalidConfig(source, errors)
        return settings

    def resolve_path(self, registry_path: Path) -> Path:
        """The rollout database: ``path``, else ``rollout.sqlite`` beside the registry file."""
        return self.path if self.path is not None else registry_path.with_name("rollout.sqlite")


def parse_duration(text: str, name: str = "soak") -> float:
    """``"90s"``, ``"10m"``, ``"1h"``, ``"1h30m"`` or plain seconds (``"600"``) in seconds."""
    value = text.strip().lower()
    if not _DURATION.match(value):
        raise ConfigError(name, text, "a duration such as 90s, 10m, 1h or 1h30m")
    return sum(float(n) * _UNIT_S[u] for n, u in _PART.findall(value))


def parse_percent(text: str, name: str = "canary") -> float:
    """``"20%"`` or ``"20"`` as 20.0, in (0, 100]."""
    value = text.strip().removesuffix("%").strip()
    try:
        pct = float(value)
    except ValueError:
        pct = float("nan")
    if not 0 < pct <= 100:
        raise ConfigError(name, text, "a percentage in (0, 100], such as 20%")
    return pct
