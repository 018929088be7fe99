"""``coordinator.toml``: one frozen value object, validated at load, every wrong key named.

state_dir = "orchard-state"          # SuperLink database, runs/, registry

[superlink]
host = "0.0.0.0"                      # where boards reach the SuperLink
port = 9092
tls_ca = "ca.pem"                     # with tls_cert + tls_key; omit all three for --insecure
tls_cert = "server.pem"
tls_key = "server.key"
supernode_auth = false                # true: only SuperNodes whose keys are registered

[model]                               # what to train (models.spec.ModelSpec)
family = "mlp"                        # mlp, cnn1d, tiny_cnn, autoencoder
task = "classify"                     # classify, regress, forecast, anomaly
features = ["temp_c", "humidity_pct", "pressure_hpa", "light_lux", "co2_ppm"]
labels = ["empty", "occupied", "crowded"]   # classify
window = 16                           # windowed families (cnn1d)

[run]                                 # coordinator.federation.runconfig.RunSettings
num_server_rounds = 10
strategy = "fedavg"
min_devices = 2
validation = "validation.csv"         # central evaluation each round (optional)
[run.central_dp]                      # and [run.strategy_options], [run.local_dp],
enabled = false                       # [run.secure_aggregation]

[mqtt] [registry] [dashboard] [selection]   # coordinator.health.settings

[delivery]                            # coordinator.delivery.settings: where boards fetch models
port = 8781                           # also host, base_url, tls_cert, tls_key, tls_ca (mutual TLS)
signing_cert = "signers/coordinator.pem"   # with signing_key: sign the models delivered
signing_key = "signers/coordinator.key"

[rollout]                             # coordinator.rollout.settings (docs/rollout.md)
after_run = "deliver"                 # after each run: "deliver", "canary" or "none"
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coordinator.delivery.settings import DeliverySettings
from coordinator.errors import ConfigError, InvalidConfig
from coordinator.federation.errors import InvalidRunConfig
from coordinator.federation.runconfig import RunSettings
from coordinator.federation.superlink import SuperLinkSettings
from coordinator.health.settings import SECTIONS as HEALTH_SECTIONS
from coordinator.health.settings import FleetHealthSettings
from coordinator.options import Section
from coordinator.rollout.settings import RolloutSettings
from models.errors import ModelError
from models.spec import InputSpec, ModelSpec, Task

TOP_KEYS = ("state_dir",)
SECTIONS = ("superlink", "model", "run", *HEALTH_SECTIONS, "delivery", "rollout")


@dataclass(frozen=True)
class CoordinatorSettings:
    state_dir: Path
    superlink: SuperLinkSettings
    model: ModelSpec | None
    run: RunSettings
    health: FleetHealthSettings
    source: str = "<defaults>"
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    rollout: RolloutSettings = field(default_factory=RolloutSettings)

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"

    @property
    def rollout_path(self) -> Path:
        """The rollout store: ``[rollout] path``, else ``rollout.sqlite`` beside the registry."""
        return self.rollout.resolve_path(self.health.registry.resolve_path(self.runs_dir))

    def run_settings(self) -> RunSettings:
        """``[run]`` with the model, absolute paths and the registry filled in."""
        run = self.run.replace(out_dir=str(self.runs_dir.resolve()))
        if self.model is not None:
            run = run.replace(model_spec=json.dumps(self.model.to_dict()))
        if run.validation:
            run = run.replace(validation=str(Path(run.validation).resolve()))
        return run


def _superlink(sec: Section, state_dir: Path) -> SuperLinkSettings:
    host = sec.get_str("host", "127.0.0.1")
    port = sec.get_int("port", 9092, low=1, high=65535)
    tls = [sec.get_path(k) for k in ("tls_ca", "tls_cert", "tls_key")]
    certificates = None
    if any(tls):
        if all(tls):
            certificates = (tls[0], tls[1], tls[2])
        elif not sec.errors_for("tls_"):
            sec.fail("tls_ca", [str(t) if t else None for t in tls], _TLS_ALL)
    auth = sec.get_bool("supernode_auth", False)
    keys = sec.get_path("supernode_keys", kind="dir")
    sec.done()
    return SuperLinkSettings(
        host=host,
        port=port,
        workdir=state_dir / "superlink",
        certificates=certificates,  # type: ignore[arg-type]
        supernode_auth=auth,
        supernode_keys=keys,
    )


_TLS_ALL = "all of tls_ca, tls_cert, tls_key (existing files), or none"


def _model(sec: Section) -> ModelSpec | None:
    if not sec.given_any():
        return None
    features = sec.get_str_list("features")
    family = sec.get_str("family", "mlp")
    task = sec.get_str("task", "classify")
    labels = sec.get_str_list("labels", [], empty=True)
    outputs = sec.get_str_list("outputs", [], empty=True)
    window = sec.get_int("window", 0, low=0)
    width = sec.get_int("width", 32, low=1)
    sec.get_int("units", 0, low=0)  # accepted for older files; the family decides
    sec.done()
    if features is None:
        if not sec.errors_for("features"):
            sec.fail("features", None, "a non-empty list of store feature names")
        return None
    try:
        spec_input = InputSpec.windowed(features, window) if window else InputSpec.tabular(features)
        return ModelSpec(
            family=family,
            task=Task.parse(task),
            input=spec_input,
            labels=tuple(labels or ()),
            outputs=tuple(outputs or ()),
            width=width,
        )
    except (ModelError, ValueError, TypeError) as exc:
        sec.errors.append(f"model: {exc}")
        return None


def from_mapping(data: Mapping[str, Any], source: str = "<mapping>") -> CoordinatorSettings:
    errors: list[str] = []
    for key, value in data.items():
        if key not in TOP_KEYS and key not in SECTIONS:
            errors.append(
                str(ConfigError(key, value, f"a section among {', '.join(SECTIONS)} or state_dir"))
            )
        elif key in SECTIONS and not isinstance(value, Mapping):
            errors.append(str(ConfigError(key, value, "a table")))
    tables = {
        name: data.get(name, {}) if isinstance(data.get(name, {}), Mapping) else {}
        for name in SECTIONS
    }
    state_dir = Path(str(data.get("state_dir", "orchard-state")))
    superlink = _superlink(Section("superlink", tables["superlink"], errors), state_dir)
    model = _model(Section("model", tables["model"], errors))
    run = RunSettings()
    try:
        run = RunSettings.from_mapping(tables["run"])
    except InvalidRunConfig as exc:
        errors += exc.errors
    health = FleetHealthSettings()
    try:
        health = FleetHealthSettings.from_mapping({k: tables[k] for k in HEALTH_SECTIONS})
    except InvalidConfig as exc:
        errors += exc.errors
    delivery = DeliverySettings.from_section(Section("delivery", tables["delivery"], errors))
    rollout = RolloutSettings.from_section(Section("rollout", tables["rollout"], errors))
    if errors:
        raise InvalidConfig(source, errors)
    return CoordinatorSettings(
        state_dir, superlink, model, run, health, source, delivery=delivery, rollout=rollout
    )


def load_or_defaults(path: Path) -> CoordinatorSettings:
    """``path`` when it exists, else the defaults (what a CLI finds beside the coordinator)."""
    return load(path) if Path(path).exists() else from_mapping({}, source="<defaults>")


def load(path: Path) -> CoordinatorSettings:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidConfig(str(path), ["the file does not exist"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidConfig(str(path), [f"cannot read it: {exc}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidConfig(str(path), [f"expected valid TOML: {exc}"]) from exc
    return from_mapping(data, source=str(path))
