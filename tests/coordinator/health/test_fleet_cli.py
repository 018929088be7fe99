"""``orchard-coordinator fleet`` (the command, on a test Typer app) over a real registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from agent.health.schema import Throttling
from coordinator import fleet_cli as cli
from coordinator.health.registry import Registry

from .helpers import birth, health, status

app = typer.Typer()
app.command("fleet")(cli.fleet)
app.command("noop")(lambda: None)  # two commands, so "fleet" is a subcommand as on the real CLI


@pytest.fixture
def registry_file(tmp_path: Path) -> Path:
    path = tmp_path / "runs" / "fleet.sqlite"
    reg = Registry(path)
    reg.record("pi-1", None, status("ready"))
    reg.record("pi-1", None, birth("pi-1"))
    reg.record("pi-1", None, health(temp=52.25, version="v3", p95=1.25))
    reg.record_outcome("pi-1", 7, ok=True)
    hot = Throttling(False, False, True, False, False, False, True, False)
    reg.record("pi-2", "barn", status("lost"))
    reg.record("pi-2", "barn", health(temp=81.0, throttling=hot, available_mb=100.0))
    reg.close()
    return path


def test_table(registry_file: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        [
            "fleet",
            "--runs-dir",
            str(registry_file.parent),
            "--config",
            str(tmp_path / "absent.toml"),
        ],
    )
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split() == [
        "DEVICE",
        "STATE",
        "TEMP",
        "THROTTLED",
        "MEMORY",
        "AGENT",
        "MODEL",
        "ROUND",
        "P95",
        "SEEN",
    ]
    assert lines[1].split()[:3] == ["pi-1", "ready", "52.2°C"]
    assert "v3" in lines[1] and " 7 " in lines[1] and "1.2 ms" in lines[1]
    assert lines[2].split()[:4] == ["barn/pi-2", "lost", "81.0°C", "throttled"]
    assert "100 MB free" in lines[2]
    assert lines[-1] == "2 device(s): 1 lost, 1 ready"


def test_json(registry_file: Path) -> None:
    res = CliRunner().invoke(app, ["fleet", "--registry", str(registry_file), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [(r["device_id"], r["state"], r["last_round"]) for r in rows] == [
        ("pi-1", "ready", 7),
        ("pi-2", "lost", 2),
    ]


def test_registry_path_from_config_and_errors(registry_file: Path, tmp_path: Path) -> None:
    config = tmp_path / "coordinator.toml"
    config.write_text(f'[registry]\npath = "{registry_file}"\n')
    res = CliRunner().invoke(app, ["fleet", "--config", str(config), "--json"])
    assert res.exit_code == 0 and len(json.loads(res.output)) == 2
    state = tmp_path / "state"
    (state / "runs").mkdir(parents=True)
    (state / "runs" / "fleet.sqlite").write_bytes(registry_file.read_bytes())
    config.write_text(f'state_dir = "{state}"\n')  # the registry under <state_dir>/runs
    res = CliRunner().invoke(app, ["fleet", "--config", str(config), "--json"])
    assert res.exit_code == 0 and len(json.loads(res.output)) == 2
    config.write_text("[registry]\nstale_after_intervals = -1\n[dashboard]\nport = 'x'\n")
    res = CliRunner().invoke(app, ["fleet", "--config", str(config)])
    assert res.exit_code == 2
    assert "registry.stale_after_intervals: expected a finite number" in res.output
    assert "dashboard.port: expected an integer" in res.output
    res = CliRunner().invoke(app, ["fleet", "--registry", str(tmp_path / "none.sqlite")])
    assert res.exit_code == 2 and "no device registry at" in res.output
