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
num-server-rounds = 10
strategy = "fedavg"
min-devices = 2
validation = "validation.csv"         # central evaluation each round (optional)

[mqtt] [registry] [dashboard] [selection]   # coordinator.health.settings
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator.errors import ConfigError, InvalidConfig
from coordinator.federation.errors import InvalidRunConfig
from coordinator.federation.runconfig import RunSettings
from coordinator.federation.superlink import SuperLinkSettings
from coordinator.health.settings import SECTIONS as HEALTH_SECTIONS
from coordinator.health.settings import FleetHealthSettings
from models.errors import ModelError
from models.spec import InputSpec, ModelSpec, Task

TOP_KEYS = ("state_dir",)
SECTIONS = ("superlink", "model", "run", *HEALTH_SECTIONS)


@dataclass(frozen=True)
class CoordinatorSettings:
    state_dir: Path
    superlink: SuperLinkSettings
    model: ModelSpec | None
    run: RunSettings
    health: FleetHealthSettings
    source: str = "<defaults>"

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"

    def run_settings(self) -> RunSettings:
        """``[run]`` with the model, absolute paths and the registry filled in."""
        run = self.run.replace(out_dir=str(self.runs_dir.resolve()))
        if self.model is not None:
            run = run.replace(model_spec=json.dumps(self.model.to_dict()))
        if run.validation:
            run = run.replace(validation=str(Path(run.validation).resolve()))
        return run


def _superlink(table: Mapping[str, Any], state_dir: Path, errors: list[str]) -> SuperLinkSettings:
    known = {"host", "port", "tls_ca", "tls_cert", "tls_key", "supernode_auth", "supernode_keys"}
    for key in table:
        if key not in known:
            errors.append(
                str(
                    ConfigError(
                        f"superlink.{key}", table[key], f"one of {', '.join(sorted(known))}"
                    )
                )
            )
    host = table.get("host", "127.0.0.1")
    if not isinstance(host, str) or not host:
        errors.append(str(ConfigError("superlink.host", host, "a host name or address")))
        host = "127.0.0.1"
    port = table.get("port", 9092)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        errors.append(str(ConfigError("superlink.port", port, "a port from 1 to 65535")))
        port = 9092
    tls = [table.get(k) for k in ("tls_ca", "tls_cert", "tls_key")]
    certificates = None
    if any(tls):
        if not all(isinstance(t, str) and t for t in tls):
            errors.append(
                str(
                    ConfigError(
                        "superlink.tls_ca", tls, "all of tls_ca, tls_cert, tls_key, or none"
                    )
                )
            )
        else:
            certificates = tuple(Path(str(t)) for t in tls)
            for key, path in zip(("tls_ca", "tls_cert", "tls_key"), certificates, strict=True):
                if not path.is_file():
                    errors.append(
                        str(ConfigError(f"superlink.{key}", str(path), "an existing file"))
                    )
    auth = table.get("supernode_auth", False)
    if not isinstance(auth, bool):
        errors.append(str(ConfigError("superlink.supernode_auth", auth, "true or false")))
        auth = False
    keys = table.get("supernode_keys")
    keys_dir = None
    if keys is not None:
        if not isinstance(keys, str) or not Path(keys).expanduser().is_dir():
            expected = "a directory of SuperNode public keys (*.pub), e.g. the CA's supernodes/"
            errors.append(str(ConfigError("superlink.supernode_keys", keys, expected)))
        else:
            keys_dir = Path(keys).expanduser()
    return SuperLinkSettings(
        host=host,
        port=port,
        workdir=state_dir / "superlink",
        certificates=certificates,  # type: ignore[arg-type]
        supernode_auth=auth,
        supernode_keys=keys_dir,
    )


def _model(table: Mapping[str, Any], errors: list[str]) -> ModelSpec | None:
    if not table:
        return None
    known = {"family", "task", "features", "labels", "outputs", "window", "width", "units"}
    for key in table:
        if key not in known:
            errors.append(
                str(ConfigError(f"model.{key}", table[key], f"one of {', '.join(sorted(known))}"))
            )
    features = table.get("features")
    if (
        not isinstance(features, list)
        or not features
        or not all(isinstance(f, str) for f in features)
    ):
        errors.append(
            str(ConfigError("model.features", features, "a non-empty list of store feature names"))
        )
        return None
    try:
        window = table.get("window")
        spec_input = (
            InputSpec.windowed(features, int(window)) if window else InputSpec.tabular(features)
        )
        return ModelSpec(
            family=str(table.get("family", "mlp")),
            task=Task.parse(str(table.get("task", "classify"))),
            input=spec_input,
            labels=tuple(table.get("labels", ())),
            outputs=tuple(table.get("outputs", ())),
            width=int(table.get("width", 32)),
        )
    except (ModelError, ValueError, TypeError) as exc:
        errors.append(f"model: {exc}")
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
    superlink = _superlink(tables["superlink"], state_dir, errors)
    model = _model(tables["model"], errors)
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
    if errors:
        raise InvalidConfig(source, errors)
    return CoordinatorSettings(state_dir, superlink, model, run, health, source)


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
