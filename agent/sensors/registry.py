"""Driver name -> driver factory, resolved lazily so unused drivers cost no imports.

``get("bme280")`` returns the class whose ``from_config`` builds a driver; an unknown name
raises a :class:`~agent.errors.ConfigError` that lists the known drivers (and the closest
match), like ``keras.activations.get``. Third parties can add drivers with :func:`register`.
"""

from __future__ import annotations

import difflib
import importlib
from typing import cast

from agent.errors import ConfigError
from agent.sensors.base import DriverFactory

_BUILTIN: dict[str, str] = {
    "bme280": "agent.sensors.bme280:Bme280Driver",
    "csv": "agent.sensors.csv_replay:CsvReplayDriver",
    "image_dir": "agent.sensors.image_dir:ImageDirDriver",
    "mqtt": "agent.sensors.mqtt:MqttDriver",
    "synthetic": "agent.sensors.synthetic:SyntheticDriver",
    "system": "agent.sensors.system:SystemDriver",
}
_registered: dict[str, DriverFactory] = {}


def names() -> list[str]:
    """Every known driver name, sorted."""
    return sorted({*_BUILTIN, *_registered})


def register(name: str, factory: DriverFactory) -> None:
    """Make ``factory`` available under ``name`` (replacing a previous registration)."""
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"expected a driver name of letters, digits and '_'. Received: {name!r}")
    _registered[name] = factory


def get(name: str, *, key: str = "driver") -> DriverFactory:
    """The factory registered as ``name``; ``key`` names the config key in the error."""
    if name in _registered:
        return _registered[name]
    target = _BUILTIN.get(name) if isinstance(name, str) else None
    if target is None:
        known = names()
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(key, name, "one of " + ", ".join(map(repr, known)) + hint)
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return cast(DriverFactory, getattr(module, attr))
