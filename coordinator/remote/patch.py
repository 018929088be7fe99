"""A configuration patch from ``KEY=VALUE`` arguments, checked before anything is sent.

``parse(["sampling.interval_s=5", "training.allowed_hours=[6,22]", "labels.mqtt_topic="],
unset=["logging.level"])`` is ``{"sampling.interval_s": "5", "training.allowed_hours":
"[6,22]", "labels.mqtt_topic": None, "logging.level": None}``: each value stays TOML text (so a
list or a string keeps its type on the board; a string needs its quotes: ``key='"text"'``),
``None`` removes the key (back to its default). :class:`PatchError` names every wrong
argument at once: a key that never changes remotely (:data:`agent.remote.command.FORBIDDEN`),
a key the command message refuses, a value that is not one TOML value, a key given twice.
Whether a value suits its key is the board's check-config validator's call (its ``rejected``
ack names the key, the value and what was expected).

:func:`effective` folds patches in order into what they add up to (removals included).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from typing import Final

from agent.health.schema import SchemaError
from agent.remote.command import FORBIDDEN, MAX_PATCH, Command, forbidden
from coordinator.errors import ConfigError
from coordinator.remote.errors import PatchError

Patch = dict[str, str | None]

_TOML_VALUE: Final = (
    'one TOML value on one line: a number, true/false, "quoted text" (key=\'"text"\' in a '
    "shell), [a, list] or {an = inline table}"
)


def parse(assignments: Iterable[str], unset: Iterable[str] = ()) -> Patch:
    """``KEY=VALUE`` (``KEY=`` removes) and ``--unset KEY`` as a patch; ``PatchError`` if wrong."""
    patch: Patch = {}
    errors: list[str] = []

    def add(key: str, value: str | None, given: str) -> None:
        problem = check_key(key)
        if problem is None and key in patch:
            problem = str(ConfigError(key, given, "each key once"))
        if problem is None and value is not None:
            problem = check_value(key, value)
        if problem is not None:
            errors.append(problem)
        else:
            patch[key] = value

    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep:
            errors.append(str(ConfigError("patch", item, "KEY=VALUE (KEY= removes the key)")))
            continue
        value = value.strip()
        add(key.strip(), value or None, item)
    for key in unset:
        add(key.strip(), None, f"--unset {key}")
    if not patch and not errors:
        errors.append(str(ConfigError("patch", "", "at least one KEY=VALUE or --unset KEY")))
    if len(patch) > MAX_PATCH:
        errors.append(str(ConfigError("patch", f"{len(patch)} keys", f"at most {MAX_PATCH}")))
    if errors:
        raise PatchError(errors)
    return patch


def check_key(key: str) -> str | None:
    """Why ``key`` cannot be sent (Keras-style), or ``None`` when it can."""
    if forbidden(key):
        return str(
            ConfigError(
                key,
                key,
                "a key that may change remotely; identity, broker and trust keys never do "
                f"({', '.join(f + '*' if f.endswith('_') else f for f in FORBIDDEN)})",
            )
        )
    try:  # the message's own rule for a key, so the CLI and the board never disagree
        Command.validate(
            {
                "device_id": "x",
                "seq": 1,
                "issued": 1.0,
                "expires": 2.0,
                "kind": "config",
                "patch": {key: "0"},
            }
        )
    except SchemaError as exc:
        return str(ConfigError(key or "patch", key, exc.expected))
    return None


def check_value(key: str, value: str) -> str | None:
    """Why ``value`` is not one TOML value (Keras-style), or ``None``."""
    if "\n" in value or "\r" in value:
        return str(ConfigError(key, value, _TOML_VALUE))
    try:
        doc = tomllib.loads(f"v = {value}\n")
    except tomllib.TOMLDecodeError:
        return str(ConfigError(key, value, _TOML_VALUE))
    if set(doc) != {"v"}:  # "5 \n other = 1" cannot sneak in a second key
        return str(ConfigError(key, value, _TOML_VALUE))
    return None


def effective(patches: Iterable[Mapping[str, str | None]]) -> Patch:
    """What ``patches`` add up to, applied in order: a later value or removal wins.

    A removal stays in the result as ``None``: the key is gone from the board's file (its
    default runs), whether an earlier patch or provisioning had set it.
    """
    out: Patch = {}
    for patch in patches:
        out.update(patch)
    return dict(sorted(out.items()))


def render(patch: Mapping[str, str | None]) -> str:
    """``sampling.interval_s=5, labels.mqtt_topic (removed)``: one line for people."""
    return ", ".join(f"{k}={v}" if v is not None else f"{k} (removed)" for k, v in patch.items())
