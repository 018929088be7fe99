"""Store configuration: one frozen value object, validated on construction."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from agent.errors import ConfigError
from agent.options import combine, flatten, unknown_key

Synchronous = Literal["NORMAL", "FULL"]

#: Smallest accepted ``max_bytes``: the schema alone takes a handful of 4 KiB pages.
MIN_MAX_BYTES = 64 * 1024


def _positive_int(key: str, value: Any) -> ConfigError | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return ConfigError(key, value, "a positive integer or none")
    return None


def _number(
    key: str, value: Any, *, minimum: float, strict: bool, allow_none: bool
) -> ConfigError | None:
    if value is None and allow_none:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        suffix = " or none" if allow_none else ""
        return ConfigError(key, value, f"a finite number {bound}{suffix}")
    return None


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """Where the store lives and how much it may keep.

    ``max_rows``, ``max_age_s`` (seconds, against the store's injectable clock) and ``max_bytes``
    (database file plus WAL) bound retention; ``None`` means unbounded. The oldest rows go first.
    Retention is checked at most every ``retention_interval_s`` seconds of clock time after an
    append (0 = after every append); each check is O(log n), so a bound can be overshot by at most
    one interval's worth of appends.

    ``synchronous``: ``NORMAL`` (default) or ``FULL``; see :mod:`agent.store.sqlite` for the
    kill -9 versus power-loss argument.
    """

    path: Path
    max_rows: int | None = None
    max_age_s: float | None = None
    max_bytes: int | None = None
    synchronous: Synchronous = "NORMAL"
    retention_interval_s: float = 1.0
    busy_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        """Check every field; raise one error naming each wrong one."""
        problems = [p for p in self._problems() if p is not None]
        if problems:
            raise combine(problems)
        object.__setattr__(self, "path", Path(self.path))

    def _problems(self) -> list[ConfigError | None]:
        problems: list[ConfigError | None] = []
        if not isinstance(self.path, str | Path) or not str(self.path):
            problems.append(ConfigError("store.path", self.path, "a file path"))
        problems.append(_positive_int("store.max_rows", self.max_rows))
        problems.append(
            _number("store.max_age_s", self.max_age_s, minimum=0, strict=True, allow_none=True)
        )
        max_bytes = _positive_int("store.max_bytes", self.max_bytes)
        if max_bytes is None and self.max_bytes is not None and self.max_bytes < MIN_MAX_BYTES:
            expected = f"an integer >= {MIN_MAX_BYTES} or none"
            max_bytes = ConfigError("store.max_bytes", self.max_bytes, expected)
        problems.append(max_bytes)
        if self.synchronous not in ("NORMAL", "FULL"):
            problems.append(
                ConfigError("store.synchronous", self.synchronous, "'NORMAL' or 'FULL'")
            )
        for key in ("retention_interval_s", "busy_timeout_s"):
            value = getattr(self, key)
            problems.append(
                _number(f"store.{key}", value, minimum=0, strict=False, allow_none=False)
            )
        return problems

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> StoreSettings:
        """Build options from a config table (e.g. ``[store]`` of ``agent.toml``).

        Raises one :class:`ConfigError` naming every wrong value and every unknown key (with
        the accepted keys and the closest match).
        """
        known = [f.name for f in fields(cls)]
        problems: list[ConfigError] = [
            unknown_key(f"store.{key}", value, known)
            for key, value in table.items()
            if key not in known
        ]
        values = {key: value for key, value in table.items() if key in known}
        if "path" not in values:
            problems.append(ConfigError("store.path", None, "a file path"))
            values["path"] = Path(":memory:")  # placeholder, so the other keys still get checked
        try:
            options = cls(**values)
        except ConfigError as exc:
            problems.extend(flatten(exc))
        if problems:
            raise combine(problems)
        return options
