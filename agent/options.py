"""Reading a config table with Keras-style errors (sensor options, agent sections).

Each getter takes the option, checks it and marks it used; ``done()`` then refuses any option
the driver did not ask for, so a typo (``adress = 0x76``) is named instead of ignored::

    opts = Options("sensors.room", options)
    bus = opts.get_int("bus", 1, low=0)
    opts.done()
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from agent.errors import ConfigError

_REQUIRED: Final = object()


class Options:
    """A driver's raw option mapping plus the config key prefix used in error messages."""

    def __init__(self, prefix: str, raw: Mapping[str, Any]) -> None:
        self.prefix = prefix
        self._raw = dict(raw)
        self._used: set[str] = set()

    def given(self, option: str) -> bool:
        """Whether the config sets ``option`` (which counts as a known option)."""
        self._used.add(option)
        return option in self._raw

    def key(self, option: str) -> str:
        return f"{self.prefix}.{option}" if self.prefix else option

    def error(self, option: str, value: Any, expected: str) -> ConfigError:
        return ConfigError(self.key(option), value, expected)

    def _take(self, option: str, default: Any) -> Any:
        self._used.add(option)
        if option in self._raw:
            return self._raw[option]
        if default is _REQUIRED:
            raise self.error(option, None, "a value (this option is required)")
        return default

    def get_raw(self, option: str, default: Any = _REQUIRED) -> Any:
        """The value as given; the caller checks it (use :meth:`error` to complain)."""
        return self._take(option, default)

    def get_int(
        self,
        option: str,
        default: Any = _REQUIRED,
        *,
        low: int | None = None,
        high: int | None = None,
        choices: Sequence[int] | None = None,
    ) -> int:
        value = self._take(option, default)
        if isinstance(value, str):  # allow "0x76" for I2C addresses
            with contextlib.suppress(ValueError):
                value = int(value, 0)
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and choices is not None and value not in choices:
            raise self.error(option, value, f"one of {', '.join(map(str, choices))}")
        if not ok or (low is not None and value < low) or (high is not None and value > high):
            raise self.error(option, value, f"an integer{_bounds(low, high)}")
        return int(value)

    def get_float(
        self,
        option: str,
        default: Any = _REQUIRED,
        *,
        low: float | None = None,
        high: float | None = None,
        positive: bool = False,
    ) -> float:
        value = self._take(option, default)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and math.isfinite(value) and not (positive and value <= 0)
        if not ok or (low is not None and value < low) or (high is not None and value > high):
            what = "a positive number" if positive else "a finite number"
            raise self.error(option, value, f"{what}{_bounds(low, high)}")
        return float(value)

    def optional_int(
        self, option: str, *, low: int | None = None, high: int | None = None
    ) -> int | None:
        if self._take(option, None) is None:
            return None
        return self.get_int(option, low=low, high=high)

    def get_bool(self, option: str, default: Any = _REQUIRED) -> bool:
        value = self._take(option, default)
        if not isinstance(value, bool):
            raise self.error(option, value, "true or false")
        return value

    def get_str(
        self, option: str, default: Any = _REQUIRED, *, choices: Sequence[str] | None = None
    ) -> str:
        value = self._take(option, default)
        if not isinstance(value, str) or not value:
            raise self.error(option, value, "a non-empty string")
        if choices is not None and value not in choices:
            raise self.error(option, value, "one of " + ", ".join(repr(c) for c in choices))
        return value

    def optional_str(self, option: str) -> str | None:
        if self._take(option, None) is None:
            return None
        return self.get_str(option)

    def get_str_list(self, option: str, default: Any = _REQUIRED) -> list[str]:
        value = self._take(option, default)
        if isinstance(value, str):
            value = [value]
        if (
            not isinstance(value, list | tuple)
            or not value
            or not all(isinstance(v, str) and v for v in value)
        ):
            raise self.error(option, value, "a non-empty list of non-empty strings")
        return list(value)

    def get_str_map(self, option: str, default: Any = _REQUIRED) -> dict[str, str]:
        value = self._take(option, default)
        if (
            not isinstance(value, Mapping)
            or not value
            or not all(isinstance(k, str) and k and isinstance(v, str) for k, v in value.items())
        ):
            raise self.error(option, value, 'a table of names to strings, e.g. {temp_c = "T"}')
        return dict(value)

    def get_path(self, option: str, default: Any = _REQUIRED, *, kind: str = "file") -> Path:
        value = self._take(option, default)
        if not isinstance(value, str | Path) or not str(value):
            raise self.error(option, value, f"a path to an existing {kind}")
        path = Path(value).expanduser()
        exists = path.is_dir() if kind == "directory" else path.is_file()
        if not exists:
            raise self.error(option, str(value), f"a path to an existing {kind}")
        return path

    def done(self) -> None:
        """Raise for the first option no getter asked for."""
        for option in self._raw:
            if option not in self._used:
                known = ", ".join(sorted(self._used)) or "none"
                raise self.error(option, self._raw[option], f"a known option ({known})")


def _bounds(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""
