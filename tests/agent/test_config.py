"""agent.toml loading: defaults, every wrong key named, and the check-config command."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agent import config, exit_codes
from agent.errors import ConfigError, InvalidConfig
from agent.options import ConfigErrors, Options, collecting

BIN = Path(sys.executable).parent


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"""
device_id = "pi-1"
state_dir = "{tmp_path}"
[sensors.env]
driver = "synthetic"
""",
    )
    cfg = config.load(path)
    assert cfg.device_id == "pi-1"
    assert cfg.store.path == tmp_path / "store.db"
    assert cfg.models.dir == tmp_path / "models"
    assert (cfg.http.host, cfg.http.port) == ("127.0.0.1", 8765)
    assert cfg.mqtt.host is None and cfg.mqtt.protocol == "auto"
    assert cfg.training.memory_mb == 768 and cfg.training.allowed_hours == (0, 24)
    assert [s.name for s in cfg.sensors] == ["env"]


BAD = """
device_id = "pi 1!"
colour = "blue"
[sensors.env]
driver = "synthetc"
[store]
max_rows = -3
[http]
port = 70000
[training]
memory_mb = "lots"
[mqtt]
protocol = "4"
"""


def test_every_wrong_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig) as err:
        config.load(_write(tmp_path, BAD))
    text = "\n".join(err.value.errors)
    for fragment in (
        "device_id: expected letters, digits",
        "Received: device_id='pi 1!'",
        "colour: expected a known option",
        "synthetc",
        "store.max_rows",
        "http.port",
        "70000",
        "training.memory_mb",
        "mqtt.protocol",
    ):
        assert fragment in text, (fragment, text)


def test_allowed_hours_must_be_a_day_range(tmp_path: Path) -> None:
    path = _write(
        tmp_path, '[sensors.env]\ndriver = "synthetic"\n[training]\nallowed_hours = [22, 6]\n'
    )
    with pytest.raises(InvalidConfig, match=r"Received: allowed_hours=\[22, 6\]"):
        config.load(path)


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="expected valid TOML"):
        config.load(_write(tmp_path, "device_id = "))
    with pytest.raises(InvalidConfig, match="does not exist"):
        config.load(tmp_path / "nope.toml")


def test_no_sensors_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match=r"sensors: expected at least one \[sensors.NAME\]"):
        config.load(_write(tmp_path, 'device_id = "pi-1"\n'))


def test_check_config_cli(tmp_path: Path) -> None:
    bad = subprocess.run(
        [str(BIN / "orchard-agent"), "check-config", str(_write(tmp_path, BAD))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == exit_codes.CONFIG_ERROR
    assert "http.port" in bad.stderr and "store.max_rows" in bad.stderr
    assert "Traceback" not in bad.stderr
    good_path = tmp_path / "good.toml"
    good_path.write_text(
        f'device_id = "pi-2"\nstate_dir = "{tmp_path}"\n[sensors.env]\ndriver = "synthetic"\n'
    )
    good = subprocess.run(
        [str(BIN / "orchard-agent"), "check-config", str(good_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert good.returncode == 0, good.stderr
    assert "OK" in good.stdout and "env (synthetic)" in good.stdout


def test_documented_example_is_valid(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "agent.example.toml").read_text()
    cfg = config.from_mapping({**tomllib.loads(text), "state_dir": str(tmp_path)}, "example")
    assert cfg.device_id == "kitchen-pi"
    assert {s.driver for s in cfg.sensors} == {"bme280", "system"}


MANY = """
device_id = "pi-1"
[sensors.room]
driver = "bme280"
adress = 0x76
iir_filter = 3
bus = -1
[store]
max_rows = -3
max_age_s = "1h"
synchronous = "OFF"
max_byte = 10
[http]
port = 70000
lan = "yes"
[training]
memory_mb = "lots"
nice = 40
"""


def test_several_wrong_keys_in_one_section_are_all_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig) as err:
        config.load(_write(tmp_path, MANY))
    expected = [
        "sensors.room.iir_filter: expected one of 0, 2, 4, 8, 16. Received: iir_filter=3",
        "sensors.room.bus: expected an integer >= 0. Received: bus=-1",
        "sensors.room.adress: expected a known option (address, bus, iir_filter, ",
        "did you mean 'address'. Received: adress=118",
        "store.max_rows: expected a positive integer or none. Received: max_rows=-3",
        "store.max_age_s: expected a finite number > 0 or none. Received: max_age_s='1h'",
        "store.synchronous: expected 'NORMAL' or 'FULL'. Received: synchronous='OFF'",
        "store.max_byte: expected a known option (busy_timeout_s, max_age_s, max_bytes, ",
        "did you mean 'max_bytes'. Received: max_byte=10",
        "http.port: expected an integer in [0, 65535]. Received: port=70000",
        "http.lan: expected true or false. Received: lan='yes'",
        "training.memory_mb: expected an integer >= 64. Received: memory_mb='lots'",
        "training.nice: expected an integer in [0, 19]. Received: nice=40",
    ]
    text = "\n".join(err.value.errors)
    for fragment in expected:
        assert fragment in text, (fragment, text)
    assert len(err.value.errors) == 11, text  # each wrong key once, nothing else


def test_check_config_names_every_wrong_key_of_a_section(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(BIN / "orchard-agent"), "check-config", str(_write(tmp_path, MANY))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == exit_codes.CONFIG_ERROR
    assert "11 problem(s)" in proc.stderr
    for received in (
        "iir_filter=3",
        "bus=-1",
        "adress=118",
        "max_rows=-3",
        "max_age_s='1h'",
        "max_byte=10",
        "synchronous='OFF'",
        "port=70000",
        "lan='yes'",
        "memory_mb='lots'",
        "nice=40",
    ):
        assert f"Received: {received}" in proc.stderr, (received, proc.stderr)


def test_wrong_common_keys_do_not_hide_the_drivers_own(tmp_path: Path) -> None:
    text = '[sensors.env]\ndriver = "synthetic"\ninterval_s = -1\nseed = -4\nsed = 3\n'
    with pytest.raises(InvalidConfig) as err:
        config.load(_write(tmp_path, text))
    assert [e.split(":")[0] for e in err.value.errors] == [
        "sensors.env.interval_s",
        "sensors.env.seed",
        "sensors.env.sed",
    ]
    assert "did you mean 'seed'" in err.value.errors[2]


def test_unknown_top_level_key_suggests_a_section(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig) as err:
        config.load(
            _write(tmp_path, '[sensors.env]\ndriver = "synthetic"\n[sotre]\nmax_rows = 5\n')
        )
    (problem,) = err.value.errors
    assert problem.startswith("sotre: expected a known option (device_id, federation, fleet, ")
    assert "did you mean 'store'" in problem


# -- agent.options.Options ---------------------------------------------------------------------


def test_options_collecting_records_and_goes_on_with_defaults() -> None:
    o = Options("s", {"a": -1, "b": "x", "c": 2.5, "typo": 1}, collect=True)
    assert o.get_int("a", 5, low=0) == 5
    assert o.get_bool("b", True) is True
    assert o.optional_str("d") is None
    assert o.get_float("c", 1.0) == 2.5
    o.report("c", 2.5, "a rounder number")
    with pytest.raises(ConfigErrors) as err:
        o.done()
    assert [e.key for e in err.value.errors] == ["s.a", "s.b", "s.c", "s.typo"]
    assert err.value.key == "s.a" and isinstance(err.value, ConfigError)
    assert str(err.value).splitlines()[3].startswith("s.typo: expected a known option (a, b, c, d)")


def test_options_collecting_stops_at_a_wrong_required_option() -> None:
    o = Options("s", {"a": -1, "b": 3}, collect=True)
    o.get_int("a", 5, low=0)
    with pytest.raises(ConfigErrors) as err:
        o.get_str("b")
    assert [e.key for e in err.value.errors] == ["s.a", "s.b"]
    with pytest.raises(ConfigError, match=r"s.c: expected a value \(this option is required\)"):
        Options("s", {}, collect=True).get_str("c")


def test_options_default_mode_raises_the_first_wrong_value() -> None:
    o = Options("s", {"a": -1, "b": "x"})
    with pytest.raises(ConfigError) as err:
        o.get_int("a", 5, low=0)
    assert not isinstance(err.value, ConfigErrors) and err.value.key == "s.a"
    with collecting():
        assert Options("s", {}).collect is True
    assert Options("s", {}).collect is False


def test_cli_usage_errors_and_light_imports() -> None:
    usage = subprocess.run(
        [str(BIN / "orchard-agent"), "check-config", "a.toml", "b.toml"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert usage.returncode == exit_codes.USAGE and "unrecognized arguments" in usage.stderr
    # The always-on process stays in its memory budget: no typer/rich (~11 MB RSS) on the board.
    probe = (
        "import sys, agent.cli, agent.runner; print(sorted({'typer', 'rich'} & set(sys.modules)))"
    )
    light = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert light.returncode == 0, light.stderr
    assert light.stdout.strip() == "[]"
