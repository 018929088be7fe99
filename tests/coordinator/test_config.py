from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator import config
from coordinator.errors import InvalidConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "coordinator.example.toml"


def test_the_documented_example_is_valid() -> None:
    cfg = config.load(EXAMPLE)
    assert cfg.model is not None and cfg.model.labels == ("empty", "occupied", "crowded")
    run = cfg.run_settings()
    assert json.loads(run.model_spec)["family"] == "mlp"
    assert Path(run.out_dir).is_absolute() and run.num_server_rounds == 10


def test_every_wrong_key_in_every_section_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "colour = 1\n[superlink]\nport = 0\nhots = 'x'\n"
        "[model]\nfeatures = []\n"
        "[run]\nstrategy = 'fedsgd'\nrounds = 3\nbatch-size = 0\n"
    )
    with pytest.raises(InvalidConfig) as info:
        config.load(path)
    text = str(info.value)
    for needle in (
        "colour: expected a section",
        "superlink.port: expected an integer in [1, 65535]",
        "superlink.hots",
        "model.features: expected a non-empty list",
        "run.strategy",
        "run.rounds",
    ):
        assert needle in text, text
    assert text.count("model.features") == 1, text


def test_a_model_table_without_features_and_half_a_tls_triple_are_named(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    path = tmp_path / "c.toml"
    path.write_text(f"[superlink]\ntls_ca = '{ca}'\n[model]\nfamily = 'mlp'\nwidth = 0\n")
    with pytest.raises(InvalidConfig) as info:
        config.load(path)
    text = str(info.value)
    assert "superlink.tls_ca: expected all of tls_ca, tls_cert, tls_key" in text, text
    assert "model.features: expected a non-empty list of store feature names" in text, text
    assert "model.width: expected an integer >= 1. Received: width=0" in text, text


def test_check_config_exits_78_on_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[run]\nmin_devices = 0\n")
    exe = Path(sys.executable).parent / "orchard-coordinator"
    bad = subprocess.run(
        [exe, "check-config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 78 and "run.min_devices: expected an integer >= 1" in bad.stderr
    good = subprocess.run(
        [exe, "check-config", str(EXAMPLE)], capture_output=True, text=True, timeout=60
    )
    assert good.returncode == 0 and "OK" in good.stdout


def test_a_regression_model_may_list_no_labels(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[model]\nfamily = 'mlp'\ntask = 'regress'\nfeatures = ['temp_c']\n"
        "labels = []\noutputs = ['co2_ppm']\n"
    )
    model = config.load(path).model
    assert model is not None and model.labels == () and model.outputs == ("co2_ppm",)
    path.write_text("[model]\nfeatures = ['temp_c']\nlabels = ['a', 3]\n")
    with pytest.raises(InvalidConfig, match=r"model.labels: expected a list of strings"):
        config.load(path)
