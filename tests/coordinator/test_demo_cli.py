"""The README's main command, as a user runs it (two devices, one round to stay quick)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.fleet]


def test_demo_trains_plots_and_every_device_answers(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "orchard-coordinator"
    done = subprocess.run(
        [exe, "demo", "--devices", "2", "--rounds", "1", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert re.search(r"round 1/1: train loss [\d.]+ metric [\d.]+ .* 2 devices", out), out
    answers = re.findall(r"demo-\d: (empty|occupied|crowded) \([\d.]+\) from model (\S+)", out)
    assert len(answers) == 2, out
    run_dir = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir())
    assert {a[1] for a in answers} == {f"{run_dir.name}.1"}  # both serve the final global model
    for name in ("history.json", "training.png", "confusion.png", "round-1/model.tflite"):
        assert (run_dir / name).exists(), name
    history = json.loads((run_dir / "history.json").read_text())
    assert history["status"] == "completed"
    # the health registry saw both boards through the embedded broker
    import sqlite3

    with sqlite3.connect(tmp_path / "runs" / "fleet.sqlite") as db:
        devices = {row[0] for row in db.execute("SELECT device_id FROM devices")}
    assert devices == {"demo-1", "demo-2"}
