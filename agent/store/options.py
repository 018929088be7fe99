"""Store configuration: one frozen value object, validated on construction."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from agent.errors import ConfigError

Synchronous = Literal["NORMAL", "FULL"]

#: Smallest accepted ``max_bytes``: the schema alone takes a handful of 4 KiB pages.
MIN_MAX_BYTES = 64 * 1024


def _positive_int(key: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(key, value, "a positive integer or none")


def _number(key: str, value: Any, *, minimum: float, strict: bool, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        suffix = " or none" if allow_none else ""
        raise ConfigError(key, value, f"a finite number {bound}{suffix}")


@dataclass(frozen=True, slots=True)
class StoreOptions:
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
        if not isinstance(self.path, str | Path) or not str(self.path):
            raise ConfigError("store.path", self.path, "a file path")
        object.__setattr__(self, "path", Path(self.path))
        _positive_int("store.max_rows", self.max_rows)
        _number("store.max_age_s", self.max_age_s, minimum=0, strict=True, allow_none=True)
        _positive_int("store.max_bytes", self.max_bytes)
        if self.max_bytes is not None and self.max_bytes < MIN_MAX_BYTES:
            raise ConfigError(
                "store.max_bytes", self.max_bytes, f"an integer >= {MIN_MAX_BYTES} or none"
            )
        if self.synchronous not in ("NORMAL", "FULL"):
            raise ConfigError("store.synchronous", self.synchronous, "'NORMAL' or 'FULL'")
        _number(
            "store.retention_interval_s",
            self.retention_interval_s,
            minimum=0,
            strict=False,
            allow_none=False,
        )
        _number(
            "store.busy_timeout_s", self.busy_timeout_s, minimum=0, strict=False, allow_none=False
        )

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> StoreOptions:
        """Build options from a config table (e.g. ``[store]`` of ``agent.toml``).

        Unknown keys are refused with a :class:`ConfigError` that names them.
        """
        known = {f.name for f in fields(cls)}
        for key, value in table.items():
            if key not in known:
                raise ConfigError(f"store.{key}", value, "one of " + ", ".join(sorted(known)))
        if "path" not in table:
            raise ConfigError("store.path", None, "a file path")
        values = dict(table)
        if isinstance(values["path"], str) and values["path"]:
            values["path"] = Path(values["path"])
        return cls(**values)
