"""agent.toml loading: defaults, every wrong key named, and the check-config command."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agent import config, exit_codes
from agent.errors import InvalidConfig

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
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == exit_codes.CONFIG_ERROR
    assert "http.port" in bad.stderr and "store.max_rows" in bad.stderr
    assert "Traceback" not in bad.stderr
    good_path = tmp_path / "good.toml"
    good_path.write_text(f'device_id = "pi-2"\nstate_dir = "{tmp_path}"\n'
                         '[sensors.env]\ndriver = "synthetic"\n')  # fmt: skip
    good = subprocess.run(
        [str(BIN / "orchard-agent"), "check-config", str(good_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert good.returncode == 0, good.stderr
    assert "OK" in good.stdout and "env (synthetic)" in good.stdout


def test_documented_example_is_valid(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "agent.example.toml").read_text()
    cfg = config.from_mapping({**tomllib.loads(text), "state_dir": str(tmp_path)}, "example")
    assert cfg.device_id == "kitchen-pi"
    assert {s.driver for s in cfg.sensors} == {"bme280", "system"}
