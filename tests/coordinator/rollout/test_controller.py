"""The rollout controller over a real store and a real registry fed validated Health messages;
only the artifact source and the MQTT publisher (the lead's, elsewhere) are fakes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.rollout.errors import NoPreviousModel, RolloutRefused
from tests.fakes import FakeClock

from .helpers import Rig

V1, V2 = "run-1.3", "run-2.5"
DEVICES = [f"pi-{i}" for i in range(1, 6)]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig.make(tmp_path, FakeClock())
    yield r
    r.close()


def on_v1(rig: Rig) -> None:
    """Five boards serving run-1.3, delivered by the coordinator; run-2.5 is ready to roll out."""
    rig.artifacts.add("run-1", 3)
    rig.artifacts.add("run-2", 5)
    for device_id in DEVICES:
        rig.fleet.add(device_id, V1)
    rig.controller.deliver("run-1", 3)
    assert rig.publisher.versions() == dict.fromkeys(DEVICES, V1)


def live(rig: Rig, devices: tuple[str, ...], version: str, accuracy: float, labelled: int) -> None:
    for device_id in devices:
        rig.fleet.metrics(
            device_id, version, predictions=100, labelled=labelled, accuracy=accuracy, p99_ms=1.0
        )


def later(rig: Rig, seconds: float, *reporting: str) -> None:
    """Time passes; the boards (all, or those named) keep reporting health."""
    rig.clock.advance(seconds)
    rig.fleet.report(*reporting)


def test_a_good_canary_is_promoted_after_the_soak_and_newcomers_get_it(rig: Rig) -> None:
    on_v1(rig)
    before = {d: m.seq for d, m in rig.publisher.retained.items()}
    rollout_id = rig.controller.start("run-2", 5, canary_pct=40)
    rollout = rig.store.rollout(rollout_id)
    assert rollout is not None and rollout.stage == "canary" and len(rollout.canary) == 2
    canary, control = rollout.canary, rollout.control
    assert sorted(canary + control) == DEVICES and rollout.previous == V1
    assert rig.publisher.versions() == {d: V2 if d in canary else V1 for d in DEVICES}
    for device_id in canary:
        message = rig.publisher.retained[device_id]
        assert message.rollout == rollout_id and message.seq > before[device_id]
    assert len(rig.publisher.sent) == 5 + 2  # the delivery, then only the canary devices

    rig.fleet.follow(rig.publisher)
    live(rig, canary, V2, accuracy=0.90, labelled=20)
    live(rig, control, V1, accuracy=0.91, labelled=20)
    later(rig, 300)
    assert rig.controller.tick() is not None
    view = rig.controller.status().rollout
    assert view is not None and view.verdict is not None
    assert view.verdict.action == "wait" and view.verdict.reason.startswith("soaking: 5m of 10m")
    assert view.comparison.canary.reporting == 2 and view.comparison.control.labelled == 60

    later(rig, 300)
    done = rig.controller.tick()
    assert done is not None and done.stage == "promoted" and done.finished == rig.clock.now
    assert done.decision is not None and done.decision.by == "auto"
    assert done.decision.reason.startswith(
        "soak of 10m passed with 2/2 canary devices reporting, 200 predictions and 40 labels; "
        "canary accuracy 0.90 on 40 labels vs control 0.91 on 60: "
        "drop 0.010 <= 0.05 + 0.190 (noise margin)"
    )
    assert rig.publisher.versions() == dict.fromkeys(DEVICES, V2)
    current = rig.store.current()
    assert current is not None and current.version == V2

    rig.fleet.add("pi-6", V1)  # a board that joins after the promotion
    rig.controller.tick()
    assert rig.publisher.versions()["pi-6"] == V2


def test_a_bad_canary_is_rolled_back_early_and_no_board_is_left_on_it(rig: Rig) -> None:
    on_v1(rig)
    rollout_id = rig.controller.start("run-2", 5, devices=["pi-1", "pi-2"])
    rig.fleet.follow(rig.publisher)
    seq_on_v2 = {d: rig.publisher.retained[d].seq for d in ("pi-1", "pi-2")}
    rig.fleet.metrics("pi-1", V2, predictions=60, labelled=25, accuracy=0.31)
    rig.fleet.metrics("pi-2", V2, predictions=40, labelled=20, accuracy=0.31)
    rig.fleet.metrics("pi-3", V1, predictions=200, labelled=30, accuracy=0.91)
    rig.fleet.metrics("pi-4", V1, predictions=200, labelled=22, accuracy=0.91)
    later(rig, 120)  # well inside the 10 minute soak

    back = rig.controller.tick()
    assert back is not None and back.id == rollout_id and back.stage == "rolling_back"
    assert back.decision is not None and back.decision.outcome == "rollback"
    assert back.decision.reason == (
        "canary accuracy 0.31 on 45 labels vs control 0.91 on 52: "
        "drop 0.600 > 0.05 + 0.239 (noise margin)"
    )
    for device_id in ("pi-1", "pi-2"):
        message = rig.publisher.retained[device_id]
        assert message.model is not None and message.model.version == V1
        assert message.seq > seq_on_v2[device_id] and message.rollout == rollout_id
    waiting = rig.controller.tick()  # the boards have not installed it yet
    assert waiting is not None and waiting.stage == "rolling_back"

    rig.fleet.follow(rig.publisher, "pi-1", "pi-2")
    done = rig.controller.tick()
    assert done is not None and done.stage == "rolled_back" and done.offline == ()
    assert done.finished == rig.clock.now
    assert {b.serving for b in rig.fleet.boards.values()} == {V1}
    current = rig.store.current()
    assert current is not None and current.version == V1


def test_figures_a_board_kept_from_serving_the_version_before_are_not_this_rollouts(
    rig: Rig,
) -> None:
    """A board that served run-2.5 in an earlier (rolled back) canary still reports those
    figures as its previous version; until it serves run-2.5 again they are old evidence."""
    on_v1(rig)
    live(rig, ("pi-1", "pi-2"), V2, accuracy=0.31, labelled=40)  # from an earlier canary
    live(rig, ("pi-3", "pi-4", "pi-5"), V1, accuracy=0.91, labelled=40)
    rig.controller.start("run-2", 5, devices=["pi-1", "pi-2"])
    later(rig, 10)  # the canary boards have not installed it yet: they report V1 and old V2
    waiting = rig.controller.tick()
    assert waiting is not None and waiting.stage == "canary"
    view = rig.controller.status().rollout
    assert view is not None and view.comparison.canary.labelled == 0
    # once serving it, with fresh figures (the agent restarts them at each install): judged
    rig.fleet.follow(rig.publisher, "pi-1", "pi-2")
    live(rig, ("pi-1", "pi-2"), V2, accuracy=0.90, labelled=40)
    later(rig, 10)
    assert rig.controller.tick().stage == "canary"  # type: ignore[union-attr]


def test_an_offline_canary_board_is_missing_data_and_gets_the_rollback_on_return(
    rig: Rig,
) -> None:
    on_v1(rig)
    rig.controller.start("run-2", 5, devices=["pi-1", "pi-2"], min_labels=0)
    rig.fleet.follow(rig.publisher)
    live(rig, ("pi-1", "pi-2"), V2, accuracy=0.9, labelled=0)
    rig.fleet.report()
    rig.fleet.offline("pi-2")
    others = ("pi-1", "pi-3", "pi-4", "pi-5")
    later(rig, 600, *others)

    rig.controller.tick()
    view = rig.controller.status().rollout
    assert view is not None and view.verdict is not None
    assert view.rollout.stage == "canary"  # the soak is over, but data is missing: no pass
    assert view.verdict.reason == "waiting for data (10m to the deadline): pi-2 is offline"

    later(rig, 600, *others)
    back = rig.controller.tick()
    assert back is not None and back.decision is not None
    assert back.decision.reason == "insufficient data after 20m (deadline 20m): pi-2 is offline"
    assert back.stage == "rolling_back"  # pi-1 still serves the canary
    rig.fleet.follow(rig.publisher, "pi-1")
    done = rig.controller.tick()
    assert done is not None and done.stage == "rolled_back" and done.offline == ("pi-2",)

    rig.fleet.back("pi-2")  # the retained desired state waits for it
    rig.fleet.follow(rig.publisher, "pi-2")
    assert rig.fleet.boards["pi-2"].serving == V1


def test_refusals_say_why_and_what_to_do(rig: Rig) -> None:
    rig.artifacts.add("run-2", 5)
    with pytest.raises(NoPreviousModel, match=r"use `orchard-coordinator rollout deliver --run "
                       r"run-2 --round 5` to send a first model to every device"):  # fmt: skip
        rig.controller.start("run-2", 5)
    rig.fleet.add("pi-1", "v0")  # installed before delivery existed; not served
    with pytest.raises(NoPreviousModel, match="the fleet serves v0, which the coordinator"):
        rig.controller.start("run-2", 5)
    with pytest.raises(RolloutRefused, match="no model to deliver for run run-9 round 1: runs/"):
        rig.controller.deliver("run-9", 1)

    rig.artifacts.add("run-1", 3)
    for device_id in ("pi-1", "pi-2"):
        rig.fleet.add(device_id, V1)
    rig.controller.deliver("run-1", 3)
    with pytest.raises(RolloutRefused, match=r"run-1\.3 already is the fleet's model"):
        rig.controller.start("run-1", 3)
    with pytest.raises(RolloutRefused, match=r"unknown: pi-9"):
        rig.controller.start("run-2", 5, devices=["pi-1", "pi-9"])
    with pytest.raises(RolloutRefused, match="not both"):
        rig.controller.start("run-2", 5, devices=["pi-1"], canary_pct=50)
    rig.controller.start("run-2", 5)
    active = "rollout r-2 of run-2.5 is active \\(canary\\): promote or abort it first"
    with pytest.raises(RolloutRefused, match=active):
        rig.controller.start("run-2", 5)
    with pytest.raises(RolloutRefused, match=active):
        rig.controller.deliver("run-1", 3)


def test_a_board_joining_during_a_canary_is_control_on_the_previous_version(rig: Rig) -> None:
    on_v1(rig)
    rollout_id = rig.controller.start("run-2", 5, devices=["pi-1"])
    rig.fleet.add("pi-6", "v0")
    rig.controller.tick()
    assert rig.publisher.versions()["pi-6"] == V1
    rollout = rig.store.rollout(rollout_id)
    assert rollout is not None and rollout.control[-1] == "pi-6"
    assert {d.device_id: d.group for d in rig.controller.status().devices}["pi-6"] == "control"


def test_a_failed_publication_is_retried_on_the_next_tick(rig: Rig) -> None:
    on_v1(rig)
    rig.publisher.down = True
    rig.controller.start("run-2", 5, devices=["pi-1"])
    stored = rig.store.desired("pi-1")
    assert stored is not None and stored.version == V2 and not stored.published
    assert rig.publisher.versions()["pi-1"] == V1  # the broker never got it
    rig.publisher.down = False
    rig.controller.tick()
    assert rig.publisher.retained["pi-1"] == stored.message()
    assert rig.store.unpublished() == []


def test_a_restart_mid_rollout_republishes_the_same_seqs_and_carries_on(rig: Rig) -> None:
    on_v1(rig)
    rollout_id = rig.controller.start("run-2", 5, devices=["pi-1", "pi-2"])
    rig.fleet.follow(rig.publisher)
    live(rig, ("pi-1", "pi-2"), V2, accuracy=0.9, labelled=20)
    live(rig, ("pi-3", "pi-4", "pi-5"), V1, accuracy=0.9, labelled=20)
    later(rig, 300)
    rig.controller.tick()
    told = dict(rig.publisher.retained)

    again = rig.restart()  # a new process: new connections, a new (empty) publisher
    assert again.controller.resume() == len(DEVICES)
    assert again.publisher.retained == told  # same messages, same seqs, same bytes
    assert [m.to_json() for _, _, m in again.publisher.sent] == [
        told[d].to_json() for d in sorted(told)
    ]
    later(again, 300)
    done = again.controller.tick()
    assert done is not None and done.id == rollout_id and done.stage == "promoted"
    assert again.publisher.versions() == dict.fromkeys(DEVICES, V2)
    again.close()


def test_after_a_long_outage_the_boards_get_time_to_report_before_data_counts_as_missing(
    rig: Rig,
) -> None:
    on_v1(rig)
    rig.controller.start("run-2", 5, devices=["pi-1"], min_labels=0)
    rig.fleet.follow(rig.publisher)
    live(rig, ("pi-1",), V2, accuracy=0.9, labelled=0)
    live(rig, ("pi-2", "pi-3"), V1, accuracy=0.9, labelled=0)
    rig.clock.advance(1500)  # the coordinator was down past the 20 minute deadline

    again = rig.restart()
    again.controller.resume()
    assert [d.online for d in again.controller.status().devices] == [False] * 5
    kept = again.controller.tick()
    assert kept is not None and kept.stage == "canary"  # not "insufficient data: offline"
    again.fleet.report()
    done = again.controller.tick()
    assert done is not None and done.stage == "promoted"
    again.close()


def test_a_restart_while_rolling_back_finishes_the_rollback(rig: Rig) -> None:
    on_v1(rig)
    rig.controller.start("run-2", 5, devices=["pi-1"])
    rig.fleet.follow(rig.publisher)
    rig.controller.abort()
    again = rig.restart()
    again.controller.resume()
    again.fleet.follow(again.publisher, "pi-1")
    done = again.controller.tick()
    assert done is not None and done.stage == "aborted" and done.decision is not None
    assert done.decision.outcome == "abort" and done.decision.by == "operator"
    assert again.fleet.boards["pi-1"].serving == V1
    again.close()


@pytest.mark.parametrize("mode", ["none", "deliver", "canary"])
def test_after_run_follows_the_configured_mode(tmp_path: Path, mode: str) -> None:
    rig = Rig.make(tmp_path, FakeClock(), after_run=mode)
    rig.artifacts.add("run-1", 3)
    rig.artifacts.add("run-2", 5)
    for device_id in DEVICES:
        rig.fleet.add(device_id, "v0")  # nothing the coordinator could roll back to
    first = rig.controller.after_run("run-1", 3)
    if mode == "none":
        assert first is None and rig.publisher.sent == [] and rig.store.rollouts() == []
        rig.close()
        return
    # "canary" with no previous model delivers the first model to every device
    assert first is not None and rig.publisher.versions() == dict.fromkeys(DEVICES, V1)
    rollout = rig.store.rollout(first)
    assert rollout is not None and (rollout.kind, rollout.stage) == ("deliver", "promoted")
    assert rollout.decision is not None and rollout.decision.by == "auto"
    rig.fleet.follow(rig.publisher)

    second = rig.controller.after_run("run-2", 5)
    rollout = rig.store.rollout(second or "")
    assert rollout is not None
    if mode == "deliver":
        assert rollout.kind == "deliver"
        assert rig.publisher.versions() == dict.fromkeys(DEVICES, V2)
    else:
        assert (rollout.kind, rollout.stage, len(rollout.canary)) == ("canary", "canary", 1)
        assert sorted(v or "" for v in rig.publisher.versions().values()) == [V1] * 4 + [V2]
    rig.close()


def test_after_run_while_a_rollout_is_active_logs_and_does_nothing(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    on_v1(rig)
    rig.controller.start("run-2", 5, devices=["pi-1"])
    rig.artifacts.add("run-3", 1)
    sent = len(rig.publisher.sent)
    with caplog.at_level(logging.WARNING, logger="coordinator.rollout.controller"):
        assert rig.controller.after_run("run-3", 1) is None
    assert len(rig.publisher.sent) == sent
    assert "after run run-3 round 1: no deliver: rollout r-2 of run-2.5 is active" in caplog.text
