"""A command's patch turned into the board's next config, checked like ``check-config``.

    candidate = build(base, current_overlay, command.patch, source="command 42")
    candidate.settings        # AgentSettings, validated by agent.config.from_mapping
    candidate.changed         # dotted keys whose effective value changes

A key that must never change remotely (:data:`agent.remote.command.FORBIDDEN`), given in the
patch or reached through a table the patch replaces, raises :class:`Refused`. A value that is
not TOML, a key that cannot be placed, and every error of the validator raise
:class:`Rejected` with each error in the check-config wording (key, value, expectation).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent import config
from agent.config import AgentSettings
from agent.errors import AgentError, ConfigError, InvalidConfig
from agent.overlay import Overlay, changed_keys
from agent.remote.command import forbidden


class Refused(AgentError):
    """The command may not be acted on (nothing is written)."""


class Rejected(AgentError):
    """The patch is wrong; ``errors`` names each key, value and expectation."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class Candidate:
    overlay: Overlay
    settings: AgentSettings
    changed: tuple[str, ...]

    @property
    def config_version(self) -> str:
        return self.settings.config_version


def parse_value(key: str, text: str) -> Any:
    """One TOML value given as text (``5``, ``"home/x"``, ``[6, 22]``, ``{temp_c = [0, 40]}``)."""
    try:
        parsed = tomllib.loads(f"value = {text}")
    except tomllib.TOMLDecodeError:
        parsed = {}
    if set(parsed) != {"value"}:
        raise ConfigError(key, text, 'one TOML value as text (5, 2.5, true, "text", [6, 22])')
    return parsed["value"]


def refuse_forbidden(keys: tuple[str, ...] | list[str]) -> None:
    bad = sorted(k for k in keys if forbidden(k))
    if bad:
        raise Refused(
            f"{', '.join(bad)}: expected keys that may change remotely; the board's identity "
            "and what it trusts change only by provisioning"
        )


def build(
    base: Mapping[str, Any],
    current: Overlay | None,
    patch: Mapping[str, str | None],
    *,
    source: str,
) -> Candidate:
    """The candidate config: ``base`` with ``current`` and then ``patch`` applied."""
    refuse_forbidden(list(patch))
    current = current or Overlay()
    errors: list[str] = []
    values: dict[str, Any] = {}
    for key, text in patch.items():
        try:
            values[key] = None if text is None else parse_value(key, text)
        except ConfigError as exc:
            errors.append(str(exc))
    try:
        overlay = current.patched(values)
        merged = overlay.apply(base)
    except ConfigError as exc:
        raise Rejected([*errors, str(exc)]) from None
    try:
        before = current.apply(base)
    except ConfigError:
        before = dict(base)
    changed = changed_keys(before, merged)
    refuse_forbidden(changed)  # e.g. a whole [mqtt] table replaced or removed
    try:  # with the values that parsed: one answer names every wrong key
        settings = config.from_mapping(merged, source=source)
    except InvalidConfig as exc:
        errors.extend(exc.errors)
    except AgentError as exc:  # a driver's own check, e.g. a sensor feature clash
        errors.append(str(exc))
    if errors:
        raise Rejected(errors)
    return Candidate(overlay, settings, changed)
