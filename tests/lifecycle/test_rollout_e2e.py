"""The model lifecycle end to end: a real coordinator process, three real agents, real Mosquitto.

``orchard-coordinator serve`` runs the health ingest, the artifact server and the rollout
controller; three ``orchard-agent run`` processes take their desired model over MQTT and fetch
it over HTTP; a replayed CSV of labelled readings drives predictions and labels into every
agent. The operator's moves go through ``orchard-coordinator rollout ...``:

1. ``deliver`` a first model to every board;
2. a canary of a good model on one board is promoted to all after its soak;
3. a canary of a model trained on shuffled labels is rolled back by itself, early, and no
   board is left on it;
4. the coordinator is killed (SIGKILL) in the middle of a canary and started again: the same
   rollout resumes and ends (promoted after its soak, which ends after the restart).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.brokers import Broker
from tests.lifecycle.fleet import (
    BIN,
    RUN_ID,
    Agent,
    Replay,
    agents,
    coordinator_serving,
    free_port,
    labelled_csv,
    write_round,
)
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow]


def _config(tmp_path: Path, broker: Broker) -> Path:
    cfg = tmp_path / "coordinator.toml"
    cfg.write_text(
        f'state_dir = "{tmp_path / "coord"}"\n'
        f"[superlink]\nport = {free_port()}\n"
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n'
        f"[dashboard]\nport = {free_port()}\n"
        f"[delivery]\nport = {free_port()}\n"
        "[rollout]\ntick_s = 0.5\nmin_labels = 20\n"
    )
    return cfg


def _rollout(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "orchard-coordinator"), "rollout", *args, "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _status(cfg: Path) -> dict[str, Any]:
    done = _rollout(cfg, "status", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _stage(cfg: Path) -> str | None:
    rollout = _status(cfg)["rollout"]
    return None if rollout is None else str(rollout["stage"])


def _serving(fleet: list[Agent]) -> dict[str, str | None]:
    return {a.device_id: a.serving() for a in fleet}


def test_deliver_promote_roll_back_and_resume_after_a_kill(
    tmp_path: Path, mosquitto: Broker
) -> None:
    runs = tmp_path / "coord" / "runs"
    v1 = write_round(runs, 1, good=True, seed=1)
    v2 = write_round(runs, 2, good=True, seed=2)
    bad = write_round(runs, 3, good=False, seed=3)
    v4 = write_round(runs, 4, good=True, seed=4)
    readings = labelled_csv(tmp_path / "labelled.csv", 400, seed=9)
    cfg = _config(tmp_path, mosquitto)
    log = tmp_path / "coordinator.log"
    names = ["pi-a", "pi-b", "pi-c"]

    with agents(tmp_path, names, mosquitto.port) as fleet, coordinator_serving(cfg, log) as coord:
        # 1. a first model for every board
        done = _rollout(cfg, "deliver", "--run", RUN_ID, "--round", "1")
        assert done.returncode == 0, done.stdout + done.stderr
        wait_until(lambda: set(_serving(fleet).values()) == {v1}, timeout=90, what="v1 on all")

        with Replay(readings, fleet) as replay:
            # 2. a good canary on one board: promoted to all after the soak
            started = time.monotonic()
            done = _rollout(
                cfg, "start", "--run", RUN_ID, "--round", "2", "--devices", "pi-a",
                "--soak", "8s",
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
            wait_until(lambda: _serving(fleet)["pi-a"] == v2, timeout=60, what="v2 on pi-a")
            assert _serving(fleet)["pi-b"] == v1  # the control group keeps the old model
            wait_until(lambda: _stage(cfg) == "promoted", timeout=120, what="v2 promoted")
            assert time.monotonic() - started >= 8  # never before the soak ends
            wait_until(lambda: set(_serving(fleet).values()) == {v2}, timeout=90, what="v2 all")

            # 3. a bad canary (shuffled labels): rolled back by itself, inside its soak
            started = time.monotonic()
            done = _rollout(
                cfg, "start", "--run", RUN_ID, "--round", "3", "--devices", "pi-b",
                "--soak", "10m",
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
            wait_until(lambda: _stage(cfg) == "rolled_back", timeout=240, what="rolled back")
            assert time.monotonic() - started < 600
            status = _status(cfg)
            decision = status["rollout"]["decision"]
            assert decision["outcome"] == "rollback" and decision["by"] == "auto", decision
            assert "accuracy" in decision["reason"], decision
            wait_until(lambda: set(_serving(fleet).values()) == {v2}, timeout=60, what="none bad")
            assert bad not in _serving(fleet).values()

            # 4. killed mid-canary, started again: the same rollout resumes and completes
            done = _rollout(
                cfg, "start", "--run", RUN_ID, "--round", "4", "--devices", "pi-c",
                "--soak", "20s",
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
            rollout_id = _status(cfg)["rollout"]["id"]
            assert _stage(cfg) == "canary"
            os.killpg(coord.pid, signal.SIGKILL)
            coord.wait(10)
            assert _stage(cfg) == "canary"  # the store kept it; nobody decided
        with Replay(readings, fleet), coordinator_serving(cfg, log):
            wait_until(lambda: _stage(cfg) == "promoted", timeout=180, what="resumed, promoted")
            assert _status(cfg)["rollout"]["id"] == rollout_id
            wait_until(lambda: set(_serving(fleet).values()) == {v4}, timeout=90, what="v4 all")
        assert not replay.errors[:5], replay.errors[:5]
        labelled = {a.device_id: a.labelled for a in fleet}
        assert all(n > 20 for n in labelled.values()), labelled
