"""``orchard-coordinator rollout ...`` through the real CLI app: requests go into the store the
running coordinator's controller reads, and ``tick()`` acts on them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coordinator.cli import app
from tests.fakes import FakeClock
from tests.waiting import wait_until

from .helpers import Rig
from .test_controller import DEVICES, V1, V2, on_v1


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "coordinator.toml"
    path.write_text(f'state_dir = "{tmp_path}"\n[rollout]\ntick_s = 2\n')
    return path


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    # the paths coordinator.toml above leads to: <state_dir>/runs/{fleet,rollout}.sqlite; the
    # clock starts now, so the CLI's own registry connection sees the boards as online
    r = Rig.make(tmp_path / "runs", FakeClock(start=time.time()))
    on_v1(r)
    yield r
    r.close()


def cli(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["rollout", *args, "--config", str(config)])
    return result.exit_code, result.output


def test_start_with_options_is_queued_then_started_by_the_controller(
    rig: Rig, config: Path
) -> None:
    code, out = cli(
        config, "start", "--run", "run-2", "--round", "5", "--canary", "40%", "--soak", "90s",
        "--min-labels", "0", "--wait", "0",
    )  # fmt: skip
    assert code == 0, out
    assert "queued start as request #1; the running coordinator acts on it within" in out
    assert rig.store.active() is None  # nothing happens until the controller's tick
    started = rig.controller.tick()
    assert started is not None and started.stage == "canary"
    assert (started.soak_s, started.min_labels, len(started.canary)) == (90.0, 0, 2)
    request = rig.store.request(1)
    assert request is not None
    assert request.result == f"started r-2: canary {', '.join(started.canary)}"

    code, out = cli(config, "status")
    assert code == 0, out
    assert "rollout r-2 (canary): run-2.5 from run run-2 round 5, replacing run-1.3" in out
    assert "soak 1m30s" in out and "now: wait: soaking:" in out
    for device_id in DEVICES:
        group = "canary" if device_id in started.canary else "control"
        want = V2 if group == "canary" else V1
        assert any(
            line.split() == [device_id, "yes", V1, want, "idle", group] for line in out.splitlines()
        ), out
    code, out = cli(config, "status", "--json")
    doc = json.loads(out)
    assert doc["rollout"]["id"] == "r-2" and doc["rollout"]["soak_s"] == 90.0
    assert [h["id"] for h in doc["history"]] == ["r-2", "r-1"]


def test_operator_promote_is_consumed_by_the_next_tick(rig: Rig, config: Path) -> None:
    rollout_id = rig.controller.start("run-2", 5, devices=["pi-1"])
    code, out = cli(config, "promote", "--wait", "0")
    assert code == 0 and "queued promote as request #1" in out, out
    pending = rig.store.pending()
    assert [(r.action, r.rollout) for r in pending] == [("promote", rollout_id)]

    done = rig.controller.tick()
    assert done is not None and done.stage == "promoted" and done.decision is not None
    assert done.decision.by == "operator"
    assert done.decision.reason.startswith(
        "promoted by the operator; the policy said wait: soaking: 0s of 10m"
    )
    assert rig.publisher.versions() == dict.fromkeys(DEVICES, V2)
    request = rig.store.request(1)
    assert request is not None and request.result == "promoted r-2"
    assert rig.store.pending() == []


def test_operator_abort_rolls_the_canary_back(rig: Rig, config: Path) -> None:
    rig.controller.start("run-2", 5, devices=["pi-1", "pi-2"])
    rig.fleet.follow(rig.publisher)
    code, out = cli(config, "abort", "--wait", "0")
    assert code == 0, out
    back = rig.controller.tick()
    assert back is not None and back.stage == "rolling_back" and back.decision is not None
    assert (back.decision.outcome, back.decision.by) == ("abort", "operator")
    assert rig.publisher.versions() == dict.fromkeys(DEVICES, V1)
    rig.fleet.follow(rig.publisher, "pi-1", "pi-2")
    done = rig.controller.tick()
    assert done is not None and done.stage == "aborted"


def test_abort_while_rolling_back_stops_waiting_for_a_stuck_board(rig: Rig, config: Path) -> None:
    rig.controller.start("run-2", 5, devices=["pi-1"])
    rig.fleet.follow(rig.publisher)
    rig.controller.abort()
    rig.controller.tick()  # pi-1 has not installed the previous version: still rolling back
    code, _ = cli(config, "abort", "--wait", "0")
    done = rig.controller.tick()
    assert code == 0 and done is not None and done.stage == "aborted"
    assert done.offline == ("pi-1",) and done.decision is not None
    assert done.decision.reason.endswith("; the operator stopped waiting for pi-1")


def test_the_cli_waits_for_the_controllers_answer_and_reports_a_refusal(
    rig: Rig, config: Path
) -> None:
    def coordinator() -> None:  # the running coordinator, ticking once the request is there
        wait_until(rig.store.pending, what="the CLI's request")
        rig.controller.tick()

    thread = threading.Thread(target=coordinator)
    thread.start()
    code, out = cli(config, "deliver", "--run", "run-9", "--round", "1", "--wait", "30")
    thread.join()
    assert code == 1, out
    assert "request #1 deliver: refused: no model to deliver for run run-9 round 1" in out


def test_wrong_options_and_impossible_requests_are_refused_at_once(rig: Rig, config: Path) -> None:
    code, out = cli(config, "promote", "--wait", "0")
    assert code == 1 and "no rollout is active: nothing to promote" in out
    code, out = cli(config, "start", "--run", "r", "--round", "1", "--soak", "ten", "--wait", "0")
    assert code == 2
    assert "soak: expected a duration such as 90s, 10m, 1h or 1h30m. Received: soak='ten'" in out
    code, out = cli(
        config, "start", "--run", "r", "--round", "1", "--canary", "120%", "--wait", "0"
    )
    assert code == 2 and "canary: expected a percentage in (0, 100]" in out
    code, out = cli(
        config, "start", "--run", "r", "--round", "1", "--canary", "5", "--devices", "a",
        "--wait", "0",
    )  # fmt: skip
    assert code == 2 and "either --canary or --devices, not both" in out
    rig.controller.start("run-2", 5, devices=["pi-1"])
    code, out = cli(config, "deliver", "--run", "run-2", "--round", "5", "--wait", "0")
    assert code == 1 and "rollout r-2 of run-2.5 is active (canary)" in out
    assert rig.store.pending() == []


def test_abort_with_nothing_active_cancels_queued_requests(rig: Rig, config: Path) -> None:
    code, _ = cli(config, "start", "--run", "run-2", "--round", "5", "--wait", "0")
    assert code == 0
    code, out = cli(config, "abort")
    assert code == 0 and "cancelled queued request(s): #1" in out
    assert rig.controller.tick() is None and rig.store.active() is None
    request = rig.store.request(1)
    assert request is not None and request.result == "cancelled: abort"
    code, out = cli(config, "abort")
    assert code == 1 and "nothing to abort" in out


def test_a_wrong_rollout_table_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "coordinator.toml"
    config.write_text("[rollout]\nsoak_s = -3\nafter_run = 'always'\n")
    code, out = cli(config, "status")
    assert code == 78
    assert "rollout.soak_s: expected a finite number >= 0.0. Received: soak_s=-3" in out
    assert "rollout.after_run: expected one of 'deliver', 'canary', 'none'" in out
    result = CliRunner().invoke(app, ["check-config", str(config)])
    assert result.exit_code == 78 and "rollout.soak_s" in result.output
