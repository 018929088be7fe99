"""Exceptions raised by the agent.

    AgentError
    ├── ConfigError        a config key has a wrong value (names key, value, expectation)
    ├── InvalidConfig      a config file with one or more ConfigErrors (or bad TOML)
    ├── SensorError        a driver failed to read; the sampler disables and reports it
    ├── StoreError         the local store could not read or write
    ├── ModelSlotError     a candidate model was refused; the serving model is unchanged
    └── DeliveryError      a desired model could not be fetched or was refused

Third-party exceptions (sqlite3, smbus2, paho, LiteRT) are translated into these at the module
that talks to the library, so callers only ever catch ``AgentError`` subclasses.
"""

from __future__ import annotations

from typing import Any


def kind_of(value: Any) -> str:
    """A received JSON value in an error message: its kind, and a short view of it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value[:24]!r})"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class AgentError(Exception):
    """Root of every error the agent raises on purpose."""


class ConfigError(AgentError, ValueError):
    """A configuration value is wrong.

    The message follows the Keras style: what was expected, then what was received, e.g.
    ``sampling.interval_s: expected a positive number. Received: interval_s=-3``.
    """

    def __init__(self, key: str, value: Any, expected: str) -> None:
        self.key = key
        self.value = value
        self.expected = expected
        leaf = key.rsplit(".", 1)[-1]
        super().__init__(f"{key}: expected {expected}. Received: {leaf}={value!r}")


class InvalidConfig(AgentError):
    """A configuration file is unusable; ``errors`` lists every wrong key found."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        lines = "\n".join(f"  - {e}" for e in errors)
        super().__init__(f"{source}: {len(errors)} problem(s):\n{lines}")


class SensorError(AgentError):
    """A sensor driver could not produce a reading."""


class StoreError(AgentError):
    """The local store failed (disk full, corrupt database, bad query)."""


class ModelSlotError(AgentError):
    """A candidate model failed verification and was not swapped in."""


class DeliveryError(AgentError):
    """A desired model could not be fetched or was refused; the serving model is unchanged.

    ``refused`` is true when the bytes arrived but are not what was promised (digest, size,
    signature): retrying fetches the same bytes unless the coordinator changes something.
    """

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused
