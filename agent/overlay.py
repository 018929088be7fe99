"""The remote overlay over ``agent.toml`` (docs/remote-config.md, On the board).

The provisioned ``/etc/orchard/agent.toml`` is read-only to the agent (systemd's
``ProtectSystem=strict``). A signed remote command (:mod:`agent.remote`) changes the board's
configuration by writing ``<state_dir>/remote/agent.toml``, which every reader applies over the
base file (:func:`agent.config.load`: ``orchard-agent run``, ``check-config``, the trainer and
every ClientApp)::

    # Written by orchard-agent from signed remote commands (docs/remote-config.md).
    unset = [
        "labels.mqtt_topic",
    ]

    [set]
    "sampling.interval_s" = 5.0
    "sensors.room.interval_s" = 10.0

``set`` maps a dotted key (``section.key``, ``sensors.NAME.key`` or a top-level key) to its value;
``unset`` lists keys removed (back to their defaults). No ``set`` key lies under another one, so
applying is: remove each ``unset`` key, then put each ``set`` key. Beside it,
``agent.toml.last-good`` is the overlay that last ran healthy (absent: no overlay).
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from agent.errors import AgentError, ConfigError

REMOTE_DIR: Final = "remote"
OVERLAY_FILE: Final = "agent.toml"
LAST_GOOD_FILE: Final = "agent.toml.last-good"
HEADER: Final = (
    "# Written by orchard-agent from signed remote commands; applied over the provisioned\n"
    "# agent.toml. Do not edit: see docs/remote-config.md.\n"
)


class OverlayError(AgentError):
    """The overlay file cannot be read or is not an overlay."""


def remote_dir(state_dir: Path) -> Path:
    return Path(state_dir) / REMOTE_DIR


def overlay_path(state_dir: Path) -> Path:
    return remote_dir(state_dir) / OVERLAY_FILE


def last_good_path(state_dir: Path) -> Path:
    return remote_dir(state_dir) / LAST_GOOD_FILE


@dataclass(frozen=True)
class Overlay:
    set: Mapping[str, Any] = field(default_factory=dict)
    unset: tuple[str, ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key the overlay touches, sorted."""
        return tuple(sorted({*self.set, *self.unset}))

    def apply(self, base: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``base`` with the overlay applied; ``ConfigError`` when a key cannot be
        placed (a parent that is not a table)."""
        data = copy.deepcopy(dict(base))
        for key in self.unset:
            remove(data, key)
        for key in sorted(self.set):
            put(data, key, copy.deepcopy(self.set[key]))
        return data

    def patched(self, changes: Mapping[str, Any]) -> Overlay:
        """This overlay with ``changes`` (dotted key -> value, ``None`` removes) made after it."""
        sets: dict[str, Any] = copy.deepcopy(dict(self.set))
        unset = set(self.unset)
        for key in sorted(changes):  # a table before the keys inside it
            value = changes[key]
            outer = next((a for a in sets if key.startswith(a + ".")), None)
            if outer is not None:  # inside a table the overlay sets: change that value
                table = sets[outer]
                inner = key[len(outer) + 1 :]
                if not isinstance(table, dict):
                    raise ConfigError(key, value, f"a key inside a table ({outer} is not a table)")
                if value is None:
                    remove(table, inner)
                else:
                    put(table, inner, value, prefix=outer)
                continue
            sets = {k: v for k, v in sets.items() if not _within(k, key)}
            unset = {k for k in unset if not _within(k, key)}
            if value is None:
                unset.add(key)
            else:
                sets[key] = value
        return Overlay(sets, tuple(sorted(unset)))

    def dumps(self) -> str:
        import tomli_w  # flwr's dependency; only a command that changes something loads it

        body: dict[str, Any] = {}
        if self.unset:
            body["unset"] = list(self.unset)
        if self.set:
            body["set"] = dict(self.set)
        return HEADER + tomli_w.dumps(body)

    @classmethod
    def loads(cls, text: str, source: str = "<overlay>") -> Overlay:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise OverlayError(f"{source}: expected valid TOML: {exc}") from None
        sets, unset = data.pop("set", {}), data.pop("unset", [])
        if data:
            raise OverlayError(f"{source}: expected only set and unset. Received: {sorted(data)}")
        if not isinstance(sets, dict) or not all(isinstance(k, str) and k for k in sets):
            raise OverlayError(f"{source}: expected set to be a table. Received: {sets!r}")
        if not isinstance(unset, list) or not all(isinstance(k, str) and k for k in unset):
            raise OverlayError(
                f"{source}: expected unset to be a list of keys. Received: {unset!r}"
            )
        return cls(sets, tuple(sorted(unset)))


def read(path: Path) -> Overlay | None:
    """The overlay at ``path``; ``None`` when there is none, ``OverlayError`` when unreadable."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8, a NUL in the path
        raise OverlayError(f"{path}: cannot read it: {exc}") from None
    return Overlay.loads(text, str(path))


def _within(key: str, outer: str) -> bool:
    return key == outer or key.startswith(outer + ".")


def put(data: dict[str, Any], key: str, value: Any, *, prefix: str = "") -> None:
    """Set the dotted ``key`` in ``data``, creating the tables on the way."""
    *parents, leaf = key.split(".")
    table = data
    for depth, name in enumerate(parents):
        nxt = table.setdefault(name, {})
        if not isinstance(nxt, dict):
            where = ".".join(filter(None, [prefix, *parents[: depth + 1]]))
            full = f"{prefix}.{key}" if prefix else key
            raise ConfigError(full, value, f"a key inside a table ({where} is not a table)")
        table = nxt
    table[leaf] = value


def remove(data: dict[str, Any], key: str) -> None:
    """Remove the dotted ``key`` from ``data`` when it is there."""
    *parents, leaf = key.split(".")
    table: Any = data
    for name in parents:
        table = table.get(name) if isinstance(table, dict) else None
    if isinstance(table, dict):
        table.pop(leaf, None)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value for every leaf (a list is a leaf; an empty table reads as absent)."""
    out: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if isinstance(value, Mapping):
            out.update(flatten(value, key))
        else:
            out[key] = value
    return out


_GONE: Final = object()


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[str, ...]:
    """The dotted keys whose value differs between two config mappings (added, removed too)."""
    a, b = flatten(old), flatten(new)
    return tuple(sorted(k for k in a.keys() | b.keys() if a.get(k, _GONE) != b.get(k, _GONE)))


def config_version(data: Mapping[str, Any]) -> str:
    """The first 16 hex digits of the sha256 of ``data`` as canonical JSON."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
