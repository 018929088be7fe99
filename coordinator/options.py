"""Reading one ``coordinator.toml`` table, collecting every wrong key instead of stopping.

Every table of coordinator.toml is read with it (config.py, health/settings.py; ``[run]``'s
grouped tables map onto RunSettings, whose own checks name the same dotted keys).

Each getter checks its option, marks it used and, when the value is wrong, records a Keras-style
message and returns the default so reading goes on; ``done()`` then names unknown options::

    sec = Section("mqtt", table, errors)
    port = sec.get_int("port", 1883, low=1, high=65535)
    sec.done()
    if errors: raise InvalidConfig("coordinator.toml", errors)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from coordinator.errors import ConfigError
from orchard_common.expected import bounds

T = TypeVar("T")


class Section:
    def __init__(self, name: str, table: Any, errors: list[str]) -> None:
        self.name = name
        self.errors = errors
        if table is None:
            table = {}
        if not isinstance(table, Mapping):
            self.fail("", table, f"a table [{name}]")
            table = {}
        self._raw: dict[str, Any] = dict(table)
        self._used: set[str] = set()

    def given_any(self) -> bool:
        """Whether the table sets anything at all."""
        return bool(self._raw)

    def errors_for(self, prefix: str) -> bool:
        """Whether an error was recorded for an option starting with ``prefix``."""
        return any(e.startswith(f"{self.name}.{prefix}") for e in self.errors)

    def fail(self, option: str, value: Any, expected: str) -> None:
        key = f"{self.name}.{option}" if option else self.name
        self.errors.append(str(ConfigError(key, value, expected)))

    def _take(self, option: str) -> tuple[bool, Any]:
        self._used.add(option)
        return option in self._raw, self._raw.get(option)

    def get_int(
        self, option: str, default: int, *, low: int | None = None, high: int | None = None
    ) -> int:
        given, value = self._take(option)
        if not given:
            return default
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok or (low is not None and value < low) or (high is not None and value > high):
            self.fail(option, value, f"an integer{bounds(low, high)}")
            return default
        return int(value)

    def get_float(
        self, option: str, default: float, *, low: float | None = None, high: float | None = None
    ) -> float:
        given, value = self._take(option)
        if not given:
            return default
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and math.isfinite(value)
        if not ok or (low is not None and value < low) or (high is not None and value > high):
            self.fail(option, value, f"a finite number{bounds(low, high)}")
            return default
        return float(value)

    def optional_float(
        self,
        option: str,
        default: float | None,
        *,
        low: float | None = None,
        high: float | None = None,
    ) -> float | None:
        """A number, or ``false`` to switch the check off (TOML has no null)."""
        given, value = self._take(option)
        if not given:
            return default
        if value is False:
            return None
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or (low is not None and value < low) or (high is not None and value > high):
            self.fail(option, value, f"a finite number{bounds(low, high)} or false (off)")
            return default
        return float(value)

    def optional_int(
        self, option: str, default: int | None, *, low: int | None = None
    ) -> int | None:
        """An integer, or ``false`` to switch the check off."""
        given, value = self._take(option)
        if not given:
            return default
        if value is False:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or (low is not None and value < low)
        ):
            self.fail(option, value, f"an integer{bounds(low, None)} or false (off)")
            return default
        return int(value)

    def get_bool(self, option: str, default: bool) -> bool:
        given, value = self._take(option)
        if not given:
            return default
        if not isinstance(value, bool):
            self.fail(option, value, "true or false")
            return default
        return value

    def get_str(self, option: str, default: T, *, choices: tuple[str, ...] = ()) -> str | T:
        given, value = self._take(option)
        if not given:
            return default
        if not isinstance(value, str) or not value:
            self.fail(option, value, "a non-empty string")
            return default
        if choices and value not in choices:
            self.fail(option, value, "one of " + ", ".join(repr(c) for c in choices))
            return default
        return value

    def get_str_list(
        self, option: str, default: list[str] | None = None, *, empty: bool = False
    ) -> list[str] | None:
        """A list of non-empty strings; an empty list only with ``empty=True``."""
        given, value = self._take(option)
        if not given:
            return default
        ok = isinstance(value, list) and all(isinstance(v, str) and v for v in value)
        if not ok or not (value or empty):
            self.fail(
                option, value, "a list of strings" if empty else "a non-empty list of strings"
            )
            return default
        return list(value)

    def get_path(self, option: str, *, kind: str = "file") -> Path | None:
        """An existing file (``kind="file"``) or directory (``kind="dir"``), ``~`` expanded."""
        given, value = self._take(option)
        if not given:
            return None
        path = Path(value).expanduser() if isinstance(value, str) and value else None
        if path is None or not (path.is_dir() if kind == "dir" else path.is_file()):
            self.fail(option, value, f"an existing {'directory' if kind == 'dir' else 'file'}")
            return None
        return path

    def done(self) -> None:
        for option, value in self._raw.items():
            if option not in self._used:
                known = ", ".join(sorted(self._used))
                self.fail(option, value, f"a known option ({known})")
