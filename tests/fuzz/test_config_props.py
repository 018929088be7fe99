"""Hypothesis on ``agent.toml``: any TOML either loads or is refused with keys named.

``config.load`` on any file tomli-w can write returns an ``AgentSettings`` or raises
``InvalidConfig``, never another exception, and every problem it lists starts with a dotted key
found in the file (or names a required section or key that is missing). One wrong value in an
otherwise good file is named by its key and the file is refused. ``orchard-agent check-config``
exits 0 for what loads and 78 (``CONFIG_ERROR``) for what does not, naming the key on stderr.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import Phase, assume, event, given, settings
from hypothesis import strategies as st

from agent import config, exit_codes
from agent.config import MqttSettings, TrainingSettings
from agent.errors import InvalidConfig
from agent.federation.settings import FederationSettings
from agent.health.settings import HealthSettings
from agent.sensors.registry import names as driver_names
from agent.serve.settings import HttpSettings
from agent.store.options import StoreSettings
from tests.fuzz.conftest import fuzz

BIN = Path(sys.executable).parent
SECTIONS: dict[str, list[str]] = {
    "store": [f.name for f in dataclasses.fields(StoreSettings)],
    "models": ["dir", "num_threads", "latency_bound_ms"],
    "http": [f.name for f in dataclasses.fields(HttpSettings)],
    "mqtt": [f.name for f in dataclasses.fields(MqttSettings)],
    "health": [f.name for f in dataclasses.fields(HealthSettings)],
    "training": [f.name for f in dataclasses.fields(TrainingSettings)],
    "sampling": ["max_consecutive_errors", "retry_disabled_s"],  # the rest are internal
    "federation": [f.name for f in dataclasses.fields(FederationSettings)],
}
SENSOR_OPTIONS = [
    "driver",
    "interval_s",
    "timeout_s",
    "max_age_s",
    "ranges",
    "enabled",
    "topics",
    "fields",
    "label",
    "host",
    "port",
    "username",
    "password",
    "tls",
    "ca_file",
    "keepalive",
    "qos",
    "client_id",
    "protocol",
    "path",
    "columns",
    "ts_column",
    "label_column",
    "loop",
    "speed",
    "root",
    "width",
    "height",
    "bus",
    "address",
    "seed",
    "device_index",
    "noise_scale",
    "label_balance",
    "anomaly_rate",
    "thermal_zone",
]
# A problem line: "<dotted key>: expected ..." (ConfigError) or the file-level reasons.
PROBLEM = re.compile(r"^(?P<key>.+?): expected ", re.DOTALL)

# -- TOML values, biased towards what validators look at ------------------------------------------

scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-3, 70_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "auto", "5", "3.1.1", "0x76", "127.0.0.1", "synthetic", "mqtt", "a/b"]),
    st.text(max_size=12),
    st.datetimes(),
    st.dates(),
    st.times(),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _section(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from([*keys, "typo_key"]), values, max_size=4)


sensor_tables = st.dictionaries(
    st.sampled_from(["env", "room", "x y", ""]),
    st.fixed_dictionaries(
        {"driver": st.sampled_from([*driver_names(), "nope"]) | values},
        optional={k: values for k in SENSOR_OPTIONS if k != "driver"},
    ),
    max_size=2,
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "device_id": st.sampled_from(["pi-1", "pi 1!", ""]) | values,
        "fleet": values,
        "state_dir": st.just("/nonexistent/orchard") | values,
        "colour": values,
        "sensors": sensor_tables | values,
        **{name: _section(keys) | values for name, keys in SECTIONS.items()},
    },
)


def _present(data: Any, dotted: str) -> bool:
    """Whether ``dotted`` (e.g. ``sensors.env.port``) names something in ``data``."""
    node = data
    parts = dotted.split(".")
    i = 0
    while i < len(parts):
        if not isinstance(node, dict):
            return False
        # sensor names and TOML keys may themselves hold dots: try the longest match first
        for j in range(len(parts), i, -1):
            key = ".".join(parts[i:j])
            if key in node:
                node, i = node[key], j
                break
        else:
            return False
    return True


def _check_problems(exc: InvalidConfig, data: dict[str, Any]) -> None:
    assert exc.errors, "a refused file names at least one problem"
    for line in exc.errors:
        m = PROBLEM.match(line)
        assert m, f"not of the form '<key>: expected ...': {line!r}"
        key = m["key"]
        missing = "Received: " in line and (line.endswith("=None") or "required" in line)
        section, _, leaf = key.rpartition(".")
        given = data.get(section) if section in SECTIONS else None
        # a rule across keys (max >= min) may name the other key of the pair it compares
        pair = isinstance(given, dict) and any(k != leaf and k in line for k in given)
        assert _present(data, key) or missing or pair or key in ("sensors", "store.path"), line


def _load(data: dict[str, Any], tmp: Path) -> config.AgentSettings:
    path = tmp / "agent.toml"
    path.write_text(tomli_w.dumps(data))
    return config.load(path)


@fuzz(300)
@given(data=documents)
def test_any_toml_loads_or_names_its_wrong_keys(data: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            cfg = _load(data, Path(tmp))
        except InvalidConfig as exc:
            event("refused")
            _check_problems(exc, data)
        else:  # it loaded: what the file said is what the config holds
            event("loaded")
            assert cfg.device_id == data.get("device_id", cfg.device_id)
            assert {s.name for s in cfg.sensors} == set(data["sensors"])


BASE: dict[str, Any] = {
    "device_id": "pi-1",
    "state_dir": "/nonexistent/orchard",
    "sensors": {"env": {"driver": "synthetic", "interval_s": 5}},
}
one_key = st.sampled_from([(s, k) for s, keys in SECTIONS.items() for k in keys])


@fuzz(300)
@given(where=one_key, value=values)
def test_one_wrong_value_is_named_by_its_key(where: tuple[str, str], value: Any) -> None:
    section, key = where
    data = {**BASE, section: {key: value}}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            _load(data, Path(tmp))
        except InvalidConfig as exc:
            event("refused")
            _check_problems(exc, data)
            named = [e for e in exc.errors if e.startswith(f"{section}.")]
            assert named, exc.errors
            assert all(e.startswith(f"{section}.") for e in exc.errors), exc.errors


@fuzz(100)
@given(where=one_key, typo=st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))
def test_an_unknown_key_is_named_with_the_known_ones(where: tuple[str, str], typo: str) -> None:
    section, key = where
    assume(typo not in SECTIONS[section])
    data = {**BASE, section: {typo: 1}}
    with tempfile.TemporaryDirectory() as tmp, pytest.raises(InvalidConfig) as info:
        _load(data, Path(tmp))
    (line,) = info.value.errors
    assert line.startswith(f"{section}.{typo}: expected a known option (") and key in line


@pytest.mark.slow
@settings(fuzz(4), phases=[Phase.explicit, Phase.generate])  # no shrinking: 1 s per example
@given(data=documents)
def test_check_config_exit_codes(data: dict[str, Any]) -> None:
    """The CLI agrees with ``config.load``: 0 and a summary, or 78 and every problem.

    The output is compared as bytes: a key may hold a carriage return, which text mode would
    turn into a newline (keys are printed as written; see the report on quoting them).
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "agent.toml"
        path.write_text(tomli_w.dumps(data))
        try:
            config.load(path)
            expected, problems = exit_codes.OK, []
        except InvalidConfig as exc:
            expected, problems = exit_codes.CONFIG_ERROR, exc.errors
        proc = subprocess.run(
            [str(BIN / "orchard-agent"), "check-config", str(path)],
            capture_output=True,
            timeout=60,
        )
    stdout, stderr = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == expected, stderr
    for problem in problems:
        assert problem in stderr
    if expected == exit_codes.OK:
        assert "OK" in stdout


@pytest.mark.slow
def test_check_config_exit_codes_on_fixed_files(tmp_path: Path) -> None:
    """Both outcomes for sure (the generated files above are mostly refused)."""
    good = tmp_path / "good.toml"
    good.write_text(tomli_w.dumps(BASE))
    bad = tmp_path / "bad.toml"
    bad.write_text(tomli_w.dumps({**BASE, "http": {"port": "eighty"}}))
    run = [str(BIN / "orchard-agent"), "check-config"]
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == exit_codes.OK and "OK" in ok.stdout
    refused = subprocess.run([*run, str(bad)], capture_output=True, text=True, timeout=60)
    assert refused.returncode == exit_codes.CONFIG_ERROR
    assert "http.port: expected an integer in [0, 65535]. Received: port='eighty'" in refused.stderr
    garbage = tmp_path / "garbage.toml"
    garbage.write_bytes(b"\xff\xfe[[[")
    refused = subprocess.run([*run, str(garbage)], capture_output=True, text=True, timeout=60)
    assert refused.returncode == exit_codes.CONFIG_ERROR and str(garbage) in refused.stderr
