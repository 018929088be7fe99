"""The remote overlay: its file format, how patches fold into it, and how ``agent.config.load``
applies it (and skips one that no longer fits)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import config
from agent.errors import ConfigError
from agent.overlay import (
    Overlay,
    OverlayError,
    changed_keys,
    config_version,
    last_good_path,
    overlay_path,
    put,
    remove,
)

BIN = Path(sys.executable).parent


def _base(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        f'device_id = "pi-1"\nstate_dir = "{tmp_path / "state"}"\n'
        '[sensors.env]\ndriver = "synthetic"\ninterval_s = 1.0\n'
        '[sensors.cpu]\ndriver = "system"\n'
        "[labels]\nmax_per_minute = 100\n" + extra
    )
    return path


def _write_overlay(tmp_path: Path, overlay: Overlay, *, last_good: bool = False) -> Path:
    state = tmp_path / "state"
    path = last_good_path(state) if last_good else overlay_path(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(overlay.dumps())
    return path


def test_the_file_round_trips_every_toml_value() -> None:
    overlay = Overlay(
        {
            "sampling.interval_s": 2.5,
            "labels.mqtt_topic": 'home/"kitchen"\\pi\n\x7f',
            "training.allowed_hours": [6, 22],
            "sensors.env.ranges": {"temp_c": [-10.0, 45.0]},
            "logging.level": "debug",
            "training.skip_when_throttled": False,
        },
        ("http.token", "store.max_rows"),
    )
    text = overlay.dumps()
    assert text.startswith("# Written by orchard-agent")
    assert Overlay.loads(text) == overlay


@pytest.mark.parametrize(
    "text",
    ["set = 5", 'unset = "x"', "[set]\nx = 1\n[other]\ny = 2", "not toml ="],
)
def test_a_file_that_is_not_an_overlay_is_named(text: str) -> None:
    with pytest.raises(OverlayError, match="expected"):
        Overlay.loads(text, "remote/agent.toml")


def test_a_key_under_a_value_that_is_not_a_table_is_named() -> None:
    with pytest.raises(
        ConfigError, match=r"http.port.x: expected a key inside a table \(http.port"
    ):
        Overlay({"http.port.x": 1}).apply({"http": {"port": 8765}})


# Keys of depth 1 (tables or removal) and 2 (numbers or removal) over a small alphabet, so
# every patch can be placed: the fold is then checked against applying the patches in turn.
_TOP = st.sampled_from(["a", "b"])
_INNER = st.sampled_from(["a.x", "a.y", "b.x"])
_TABLE = st.dictionaries(st.sampled_from(["x", "y", "z"]), st.integers(0, 9), max_size=3)
_PATCH = st.lists(
    st.tuples(_TOP, st.none() | _TABLE) | st.tuples(_INNER, st.none() | st.integers(0, 9)),
    max_size=4,
).map(dict)


@settings(max_examples=300, deadline=None)
@given(
    base=st.fixed_dictionaries({"a": _TABLE, "b": _TABLE, "c": st.integers(0, 9)}),
    patches=st.lists(_PATCH, max_size=5),
)
def test_folded_patches_equal_the_patches_applied_in_turn(
    base: dict[str, Any], patches: list[dict[str, Any]]
) -> None:
    expected = copy.deepcopy(base)
    overlay = Overlay()
    for patch in patches:
        for key in sorted(patch):
            if patch[key] is None:
                remove(expected, key)
            else:
                put(expected, key, copy.deepcopy(patch[key]))
        overlay = overlay.patched(patch)
        # no set key lies under another: the order of applying cannot matter
        assert not any(k.startswith(o + ".") for k in overlay.set for o in overlay.set)
    # up to empty tables (a table whose keys were all removed reads as absent: defaults)
    assert _pruned(overlay.apply(base)) == _pruned(expected)
    assert _pruned(Overlay.loads(overlay.dumps()).apply(base)) == _pruned(expected)


def _pruned(data: dict[str, Any]) -> dict[str, Any]:
    out = {k: _pruned(v) if isinstance(v, dict) else v for k, v in data.items()}
    return {k: v for k, v in out.items() if v != {}}


def test_changed_keys_and_version() -> None:
    old = {"a": {"x": 1, "y": [1, 2]}, "b": 1}
    new = {"a": {"x": 1, "y": [1, 3], "z": {}}, "c": 2}
    assert changed_keys(old, new) == ("a.y", "b", "c")  # an empty table reads as absent
    assert config_version(old) == config_version({"b": 1, "a": {"y": [1, 2], "x": 1}})
    assert config_version(old) != config_version(new)
    assert len(config_version(old)) == 16


def test_load_applies_the_overlay_and_names_its_keys(tmp_path: Path) -> None:
    path = _base(tmp_path)
    plain = config.load(path)
    assert plain.overlay.path is None and plain.overlay.keys == ()
    overlay = Overlay(
        {"sampling.interval_s": 7.0, "labels.max_per_minute": 30}, ("sensors.env.interval_s",)
    )
    written = _write_overlay(tmp_path, overlay)
    cfg = config.load(path)
    assert cfg.overlay.path == written
    assert cfg.overlay.keys == (
        "labels.max_per_minute",
        "sampling.interval_s",
        "sensors.env.interval_s",
    )
    # [sampling] interval_s is the interval of every sensor that sets none (env's was removed)
    assert {s.name: s.interval_s for s in cfg.sensors} == {"env": 7.0, "cpu": 7.0}
    assert cfg.labels.max_per_minute == 30
    assert cfg.config_version != plain.config_version
    assert config.load(path, overlay=False).config_version == plain.config_version


def test_an_overlay_that_no_longer_fits_is_skipped_for_the_last_good(tmp_path: Path) -> None:
    path = _base(tmp_path)
    _write_overlay(tmp_path, Overlay({"labels.max_per_minute": 30}), last_good=True)
    _write_overlay(tmp_path, Overlay({"labels.max_per_minute": -1}))
    cfg = config.load(path)
    assert cfg.labels.max_per_minute == 30
    assert cfg.overlay.path == last_good_path(tmp_path / "state")
    assert "labels.max_per_minute: expected an integer in [1, 60000]" in cfg.overlay.skipped[0]

    _write_overlay(tmp_path, Overlay({"state_dir": "/elsewhere"}), last_good=True)
    (overlay_path(tmp_path / "state")).write_text("garbage =")
    cfg = config.load(path)
    assert cfg.overlay.path is None and cfg.labels.max_per_minute == 100
    assert len(cfg.overlay.skipped) == 2


def test_check_config_says_which_keys_come_from_the_overlay(tmp_path: Path) -> None:
    path = _base(tmp_path)
    _write_overlay(tmp_path, Overlay({"sampling.interval_s": 7.0}))
    out = subprocess.run(
        [str(BIN / "orchard-agent"), "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert f"remote overlay {overlay_path(tmp_path / 'state')}: sampling.interval_s" in out
    version = config.load(path).config_version
    assert f"config version {version}" in out
    base_only = subprocess.run(
        [str(BIN / "orchard-agent"), "check-config", "--no-overlay", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "remote overlay" not in base_only
