"""Exceptions raised by the coordinator.

    CoordinatorError
    ├── ConfigError        a config key has a wrong value (names key, value, expectation)
    ├── InvalidConfig      a config section with one or more ConfigErrors
    ├── BrokerError        the embedded MQTT broker could not start or stop
    └── RegistryError      the device registry could not read or write

Third-party exceptions (amqtt, sqlite3, paho) are translated into these at the module that
talks to the library, so callers only ever catch ``CoordinatorError`` subclasses.
"""

from __future__ import annotations

from typing import Any


class CoordinatorError(Exception):
    """Root of every error the coordinator raises on purpose."""


class ConfigError(CoordinatorError, ValueError):
    """A configuration value is wrong (Keras style: expected ..., then what was received)."""

    def __init__(self, key: str, value: Any, expected: str) -> None:
        self.key = key
        self.value = value
        self.expected = expected
        leaf = key.rsplit(".", 1)[-1]
        super().__init__(f"{key}: expected {expected}. Received: {leaf}={value!r}")


class InvalidConfig(CoordinatorError, ValueError):
    """A configuration is unusable; ``errors`` lists every wrong key found."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        lines = "\n".join(f"  - {e}" for e in errors)
        super().__init__(f"{source}: {len(errors)} problem(s):\n{lines}")


class BrokerError(CoordinatorError):
    """The embedded MQTT broker failed to start or stop."""


class RegistryError(CoordinatorError):
    """The device registry database failed (disk full, corrupt file, locked)."""
