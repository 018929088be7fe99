"""The main job until the demo lands: ``orchard-coordinator smoke`` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_smoke_trains_exports_and_predicts_without_tensorflow(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    proc = subprocess.run(
        [str(BIN / "orchard-coordinator"), "smoke", "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TensorFlow loaded: False" in proc.stdout
    lines = [line for line in proc.stdout.splitlines() if "-> predicted=" in line]
    assert len(lines) == 5
    right = sum(
        line.split("predicted=")[1].split()[0] in line.split("truth: ")[1] for line in lines
    )
    assert right >= 4, proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["quantization"] == "int8" and manifest["parity"]["passed"]
    assert (out / "model.keras").exists()


def test_smoke_bad_option_is_named(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(BIN / "orchard-coordinator"), "smoke", "--family", "resnet", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "Received: family='resnet'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_agent_version_reports_runtime() -> None:
    proc = subprocess.run(
        [str(BIN / "orchard-agent"), "version"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "inference runtime: ai-edge-litert" in proc.stdout
