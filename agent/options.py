"""Reading a config table with Keras-style errors (sensor options, agent sections).

Each getter takes the option, checks it and marks it used; ``done()`` then refuses any option
the driver did not ask for, so a typo (``adress = 0x76``) is named instead of ignored::

    opts = Options("sensors.room", options)
    bus = opts.get_int("bus", 1, low=0)
    opts.done()

By default the first wrong value raises. In *collecting* mode (``Options(..., collect=True)``,
or any ``Options`` created inside ``with collecting():``, which is how ``agent.config`` checks
a file) a wrong value is recorded and the getter returns the option's default, so the reader
goes on; ``done()`` then raises every recorded problem and every unknown option at once, as
one :class:`ConfigErrors`. A wrong *required* option (no default to go on with) raises at once,
together with what was recorded before it.
"""

from __future__ import annotations

import contextlib
import difflib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Final, TypeVar

from agent.errors import ConfigError
from orchard_common.expected import bounds

_REQUIRED: Final = object()
_COLLECTING: ContextVar[bool] = ContextVar("orchard_config_collecting", default=False)
T = TypeVar("T")


class ConfigErrors(ConfigError):
    """Several wrong keys at once. ``errors`` lists each; ``key``/``value``/``expected`` are the
    first one's, so code that handles a single :class:`ConfigError` keeps working."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.key, first.value, first.expected)
        self.errors = list(errors)
        self.args = ("\n".join(str(e) for e in self.errors),)


def flatten(exc: ConfigError) -> list[ConfigError]:
    """The single errors inside ``exc`` (itself, unless it is a :class:`ConfigErrors`)."""
    return list(exc.errors) if isinstance(exc, ConfigErrors) else [exc]


def combine(errors: Sequence[ConfigError]) -> ConfigError:
    """One exception for ``errors`` (non-empty): the error itself when there is only one."""
    flat = [single for exc in errors for single in flatten(exc)]
    return flat[0] if len(flat) == 1 else ConfigErrors(flat)


@contextlib.contextmanager
def collecting() -> Iterator[None]:
    """Put every :class:`Options` created in this block (drivers' too) in collecting mode."""
    token = _COLLECTING.set(True)
    try:
        yield
    finally:
        _COLLECTING.reset(token)


def unknown_key(key: str, value: Any, known: Iterable[str]) -> ConfigError:
    """An unknown option: lists the accepted ones and suggests the closest, if any."""
    names = sorted(set(known))
    leaf = key.rsplit(".", 1)[-1]
    listed = ", ".join(names) or "none"
    close = difflib.get_close_matches(leaf, names, n=1)
    hint = f"; did you mean {close[0]!r}" if close else ""
    return ConfigError(key, value, f"a known option ({listed}){hint}")


class Options:
    """A driver's raw option mapping plus the config key prefix used in error messages."""

    def __init__(self, prefix: str, raw: Mapping[str, Any], *, collect: bool | None = None) -> None:
        self.prefix = prefix
        self._raw = dict(raw)
        self._used: set[str] = set()
        self.collect = _COLLECTING.get() if collect is None else collect
        self.problems: list[ConfigError] = []

    def given(self, option: str) -> bool:
        """Whether the config sets ``option`` (which counts as a known option)."""
        self._used.add(option)
        return option in self._raw

    def key(self, option: str) -> str:
        return f"{self.prefix}.{option}" if self.prefix else option

    def error(self, option: str, value: Any, expected: str) -> ConfigError:
        """The error to raise for ``option``; in collecting mode it carries the recorded ones."""
        err = ConfigError(self.key(option), value, expected)
        return combine([*self.problems, err]) if self.collect else err

    def report(self, option: str, value: Any, expected: str) -> None:
        """A wrong value found by the caller: raise, or record it when collecting."""
        self.record(ConfigError(self.key(option), value, expected))

    def record(self, exc: ConfigError) -> None:
        """Raise ``exc``, or record it for :meth:`done` when collecting."""
        if not self.collect:
            raise exc
        self.problems.extend(flatten(exc))

    def _checked(self, option: str, default: Any, check: Callable[[Any], T]) -> T:
        """``check`` the given value, else the default. When collecting, a wrong value is
        recorded and the (checked) default returned instead, unless the option is required:
        then everything recorded so far is raised."""
        self._used.add(option)
        if option not in self._raw and default is _REQUIRED:
            raise self.error(option, None, "a value (this option is required)")
        try:
            return check(self._raw.get(option, default))
        except ConfigError as exc:
            if not self.collect:
                raise
            if default is _REQUIRED:
                raise combine([*self.problems, exc]) from None
            self.problems.append(exc)
            return check(default)

    def _optional(self, option: str, check: Callable[[Any], T]) -> T | None:
        """``check`` the value if given; ``None`` when absent (or wrong, when collecting)."""
        if not self.given(option):
            return None
        try:
            return check(self._raw[option])
        except ConfigError as exc:
            if not self.collect:
                raise
            self.problems.append(exc)
            return None

    def get_raw(self, option: str, default: Any = _REQUIRED) -> Any:
        """The value as given; the caller checks it (use :meth:`report` to complain)."""
        return self._checked(option, default, lambda value: value)

    def get_int(
        self,
        option: str,
        default: Any = _REQUIRED,
        *,
        low: int | None = None,
        high: int | None = None,
        choices: Sequence[int] | None = None,
    ) -> int:
        return self._checked(option, default, _int(self.key(option), low, high, choices))

    def optional_int(
        self, option: str, *, low: int | None = None, high: int | None = None
    ) -> int | None:
        return self._optional(option, _int(self.key(option), low, high, None))

    def get_float(
        self,
        option: str,
        default: Any = _REQUIRED,
        *,
        low: float | None = None,
        high: float | None = None,
        positive: bool = False,
    ) -> float:
        return self._checked(option, default, _float(self.key(option), low, high, positive))

    def get_bool(self, option: str, default: Any = _REQUIRED) -> bool:
        return self._checked(option, default, _bool(self.key(option)))

    def get_str(
        self, option: str, default: Any = _REQUIRED, *, choices: Sequence[str] | None = None
    ) -> str:
        return self._checked(option, default, _str(self.key(option), choices))

    def optional_str(self, option: str) -> str | None:
        return self._optional(option, _str(self.key(option), None))

    def get_str_list(self, option: str, default: Any = _REQUIRED) -> list[str]:
        return self._checked(option, default, _str_list(self.key(option)))

    def get_str_map(self, option: str, default: Any = _REQUIRED) -> dict[str, str]:
        return self._checked(option, default, _str_map(self.key(option)))

    def get_path(self, option: str, default: Any = _REQUIRED, *, kind: str = "file") -> Path:
        return self._checked(option, default, _path(self.key(option), kind))

    def done(self, *, also: Iterable[str] = ()) -> None:
        """Raise for every option no getter asked for and every wrong value recorded (when
        collecting). ``also`` names further accepted keys (for the list and suggestions)."""
        known = {*self._used, *also}
        errors = list(self.problems)
        for option, value in self._raw.items():
            if option not in known:
                errors.append(unknown_key(self.key(option), value, known))
        if errors:
            raise combine(errors)


# -- checks: each takes the raw value and returns it converted, or raises ConfigError -----------


def _int(
    key: str, low: int | None, high: int | None, choices: Sequence[int] | None
) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, str):  # allow "0x76" for I2C addresses
            with contextlib.suppress(ValueError):
                value = int(value, 0)
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and choices is not None and value not in choices:
            raise ConfigError(key, value, f"one of {', '.join(map(str, choices))}")
        if not ok or (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(key, value, f"an integer{bounds(low, high)}")
        return int(value)

    return check


def _float(
    key: str, low: float | None, high: float | None, positive: bool
) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and math.isfinite(value) and not (positive and value <= 0)
        if not ok or (low is not None and value < low) or (high is not None and value > high):
            what = "a positive number" if positive else "a finite number"
            raise ConfigError(key, value, f"{what}{bounds(low, high)}")
        return float(value)

    return check


def _bool(key: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ConfigError(key, value, "true or false")
        return value

    return check


def _str(key: str, choices: Sequence[str] | None) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise ConfigError(key, value, "a non-empty string")
        if choices is not None and value not in choices:
            raise ConfigError(key, value, "one of " + ", ".join(repr(c) for c in choices))
        return value

    return check


def _str_list(key: str) -> Callable[[Any], list[str]]:
    def check(value: Any) -> list[str]:
        if isinstance(value, str):
            value = [value]
        if (
            not isinstance(value, list | tuple)
            or not value
            or not all(isinstance(v, str) and v for v in value)
        ):
            raise ConfigError(key, value, "a non-empty list of non-empty strings")
        return list(value)

    return check


def _str_map(key: str) -> Callable[[Any], dict[str, str]]:
    def check(value: Any) -> dict[str, str]:
        if (
            not isinstance(value, Mapping)
            or not value
            or not all(isinstance(k, str) and k and isinstance(v, str) for k, v in value.items())
        ):
            raise ConfigError(key, value, 'a table of names to strings, e.g. {temp_c = "T"}')
        return dict(value)

    return check


def _path(key: str, kind: str) -> Callable[[Any], Path]:
    def check(value: Any) -> Path:
        expected = f"a path to an existing {kind}"
        if not isinstance(value, str | Path) or not str(value):
            raise ConfigError(key, value, expected)
        path = Path(value).expanduser()
        exists = path.is_dir() if kind == "directory" else path.is_file()
        if not exists:
            raise ConfigError(key, str(value), expected)
        return path

    return check
