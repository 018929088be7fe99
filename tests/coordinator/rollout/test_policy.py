"""The rollout policy's verdicts, on samples built from the schema's own LiveModel."""

from __future__ import annotations

from agent.health.schema import LiveModel
from coordinator.rollout.policy import (
    Criteria,
    Sample,
    aggregate,
    choose_canary,
    duration,
    evaluate,
)
from coordinator.rollout.settings import Thresholds

SOAK = 600.0
CRITERIA = Criteria(soak_s=SOAK, deadline_s=2 * SOAK, min_labels=30, thresholds=Thresholds())


def on(device_id: str, version: str, *, online: bool = True, **metrics: float | int) -> Sample:
    return Sample(device_id, online, serving=True, live=LiveModel(version, **metrics))  # type: ignore[arg-type]


def good_canary() -> list[Sample]:
    return [
        on("pi-1", "v2", predictions=200, labelled=25, accuracy=0.92, p99_ms=1.2),
        on("pi-2", "v2", predictions=100, labelled=20, accuracy=0.88, p99_ms=1.5),
    ]


def control() -> list[Sample]:
    return [
        on("pi-3", "v1", predictions=400, labelled=30, accuracy=0.90, p99_ms=1.1),
        on("pi-4", "v1", predictions=400, labelled=22, accuracy=0.92, p99_ms=1.3),
    ]


def test_groups_sum_counts_and_weigh_means_by_predictions_and_labels() -> None:
    stats = aggregate(
        [
            LiveModel("v2", predictions=300, errors=3, p99_ms=2.0, mean_confidence=0.9,
                      labelled=10, accuracy=1.0),
            LiveModel("v2", predictions=100, errors=1, p99_ms=6.0, mean_confidence=0.5,
                      labelled=30, accuracy=0.6),
        ],
        devices=3,
        reporting=2,
    )  # fmt: skip
    assert (stats.devices, stats.reporting, stats.predictions, stats.errors) == (3, 2, 400, 4)
    assert stats.error_rate == 4 / 404
    assert stats.p99_ms == (300 * 2.0 + 100 * 6.0) / 400
    assert stats.mean_confidence == (300 * 0.9 + 100 * 0.5) / 400
    assert stats.labelled == 40 and stats.accuracy == (10 * 1.0 + 30 * 0.6) / 40
    assert stats.mae is None
    assert set(stats.to_dict()) == {
        "devices", "reporting", "predictions", "errors", "error_rate", "p99_ms",
        "mean_confidence", "labelled", "accuracy", "mae",
    }  # fmt: skip


def test_a_good_canary_waits_out_the_soak_then_is_promoted() -> None:
    during = evaluate(good_canary(), control(), CRITERIA, elapsed_s=300)
    assert during.action == "wait" and during.reason.startswith("soaking: 5m of 10m")
    after = evaluate(good_canary(), control(), CRITERIA, elapsed_s=SOAK)
    assert after.action == "promote", after.reason
    assert "2/2 canary devices reporting, 300 predictions and 45 labels" in after.reason
    assert (
        "canary accuracy 0.90 on 45 labels vs control 0.91 on 52: "
        "drop 0.006 <= 0.05 + 0.188 (noise margin)"
    ) in after.reason
    assert after.reason.endswith("error rate 0.000 <= 0.02; p99 1.3 ms (1.1x)")
    assert after.comparison.canary.labelled == 45 and after.comparison.control.labelled == 52


def test_a_bad_canary_is_rolled_back_inside_the_soak_with_the_numbers() -> None:
    bad = [
        on("pi-1", "v2", predictions=90, labelled=25, accuracy=0.32),
        on("pi-2", "v2", predictions=60, labelled=20, accuracy=0.30),
    ]
    verdict = evaluate(bad, control(), CRITERIA, elapsed_s=60)
    assert verdict.action == "rollback"
    assert verdict.reason == (
        "canary accuracy 0.31 on 45 labels vs control 0.91 on 52: "
        "drop 0.597 > 0.05 + 0.240 (noise margin)"
    )


def test_labels_are_judged_only_from_min_labels_on() -> None:
    few = [on("pi-1", "v2", predictions=90, labelled=29, accuracy=0.1)]
    assert evaluate(few, control(), CRITERIA, elapsed_s=60).action == "wait"
    unjudged = Criteria(SOAK, 2 * SOAK, min_labels=0, thresholds=Thresholds())
    verdict = evaluate(few, control(), unjudged, elapsed_s=SOAK)
    assert verdict.action == "promote" and "accuracy" not in verdict.reason


def test_mae_increase_over_the_ratio_rolls_back() -> None:
    canary = [on("pi-1", "v2", predictions=100, labelled=40, mae=1.5)]
    ctrl = [on("pi-3", "v1", predictions=100, labelled=40, mae=1.0)]
    verdict = evaluate(canary, ctrl, CRITERIA, elapsed_s=10)
    assert verdict.action == "rollback"
    assert verdict.reason == "canary MAE 1.5 on 40 labels vs control 1 on 40: +50% > +10%"


def test_error_rate_and_latency_limits_roll_back_once_there_are_enough_predictions() -> None:
    errors = [on("pi-1", "v2", predictions=95, errors=5)]
    assert evaluate(errors, control(), CRITERIA, elapsed_s=10).reason == (
        "canary error rate 0.050 (5 errors in 100 calls; control 0.000) > 0.02"
    )
    slow = [on("pi-1", "v2", predictions=100, p99_ms=30.0)]
    verdict = evaluate(slow, control(), CRITERIA, elapsed_s=10)
    assert verdict.action == "rollback"
    assert verdict.reason == (
        "canary p99 latency 30.0 ms vs control 1.2 ms: 25.0x > 2x (and over 10 ms)"
    )
    # several times slower but still under the floor (a cold cache after the swap): passes
    cold = [on("pi-1", "v2", predictions=100, p99_ms=3.0)]
    assert evaluate(cold, control(), CRITERIA, elapsed_s=10).action == "wait"
    early = [on("pi-1", "v2", predictions=5, errors=5, p99_ms=30.0)]  # 10 calls < 20
    assert evaluate(early, control(), CRITERIA, elapsed_s=10).action == "wait"


def test_drift_over_the_limit_rolls_back() -> None:
    drifting = [on("pi-1", "v2", predictions=100, drift_psi=0.4)]
    verdict = evaluate(drifting, control(), CRITERIA, elapsed_s=10)
    assert verdict.reason == "canary class drift PSI 0.40 against the previous version > 0.25"


def test_a_threshold_switched_off_is_not_judged() -> None:
    off = Criteria(SOAK, 2 * SOAK, 0, Thresholds(max_error_rate=None, max_p99_ratio=None))
    noisy = [on("pi-1", "v2", predictions=50, errors=50, p99_ms=100.0)]
    assert evaluate(noisy, control(), off, elapsed_s=SOAK).action == "promote"


def test_an_offline_canary_device_is_missing_data_never_a_pass() -> None:
    canary = [*good_canary(), on("pi-5", "v2", online=False, predictions=10, labelled=5)]
    after_soak = evaluate(canary, control(), CRITERIA, elapsed_s=SOAK)
    assert after_soak.action == "wait"
    assert after_soak.missing == ("pi-5 is offline",)
    assert after_soak.reason == "waiting for data (10m to the deadline): pi-5 is offline"
    at_deadline = evaluate(canary, control(), CRITERIA, elapsed_s=2 * SOAK)
    assert at_deadline.action == "rollback"
    assert at_deadline.reason == ("insufficient data after 20m (deadline 20m): pi-5 is offline")


def test_a_device_not_on_the_new_version_or_silent_about_it_is_missing_data() -> None:
    canary = [
        Sample("pi-1", online=True, serving=False, live=None),
        Sample("pi-2", online=True, serving=True, live=None),
    ]
    verdict = evaluate(canary, control(), CRITERIA, elapsed_s=2 * SOAK)
    assert verdict.action == "rollback"
    assert verdict.missing == (
        "pi-1 does not serve the new version yet",
        "pi-2 has not reported metrics for the new version",
        "canary has 0 predictions < min_predictions 20",
        "canary has 0 labelled predictions < min_labels 30",
    )
    assert verdict.reason.startswith("insufficient data after 20m")


def test_too_few_labels_at_the_deadline_is_insufficient_data() -> None:
    canary = [on("pi-1", "v2", predictions=500, labelled=12, accuracy=0.9)]
    verdict = evaluate(canary, control(), CRITERIA, elapsed_s=2 * SOAK)
    assert verdict.reason == (
        "insufficient data after 20m (deadline 20m): "
        "canary has 12 labelled predictions < min_labels 30"
    )


def test_a_bad_report_from_a_device_gone_offline_still_rolls_back() -> None:
    canary = [on("pi-1", "v2", online=False, predictions=80, labelled=40, accuracy=0.2)]
    assert evaluate(canary, control(), CRITERIA, elapsed_s=10).action == "rollback"


def test_the_canary_is_chosen_deterministically_and_leaves_a_control_group() -> None:
    devices = [f"pi-{i}" for i in range(10)]
    first = choose_canary(devices, 20, "run-1.3")
    assert len(first) == 2 and first == choose_canary(reversed(devices), 20, "run-1.3")
    assert choose_canary(devices, 1, "v") and len(choose_canary(devices, 1, "v")) == 1
    assert len(choose_canary(devices, 100, "v")) == 9  # one stays on the previous version
    assert choose_canary(["solo"], 20, "v") == ("solo",)
    others = {choose_canary(devices, 20, f"run-{i}.1") for i in range(20)}
    assert len(others) > 1  # other versions, other devices


def test_durations_read_as_people_write_them() -> None:
    assert [duration(s) for s in (0, 45, 90, 600, 3600, 5400)] == [
        "0s", "45s", "1m30s", "10m", "1h", "1h30m",
    ]  # fmt: skip


def test_a_dip_within_the_noise_of_few_labels_is_not_a_rollback() -> None:
    """0.83 on 30 labels against 0.908 on 52 is 0.078 worse: more than max_accuracy_drop, but
    well inside what 30 labels can show by chance (a benchmark rolled back 43 of 100 good
    canaries when the bare drop was compared at every tick)."""
    dip = [on("pi-1", "v2", predictions=100, labelled=30, accuracy=0.83)]
    verdict = evaluate(dip, control(), CRITERIA, elapsed_s=10)
    assert verdict.action == "wait", verdict.reason
    assert "drop 0.078 <= 0.05 + 0.243 (noise margin)" in verdict.reason
    # a dip of 0.11 on 2,000 labels each is real (margin about 0.03)
    many = [on("pi-1", "v2", predictions=3000, labelled=2000, accuracy=0.80)]
    big_control = [on("pi-3", "v1", predictions=3000, labelled=2000, accuracy=0.91)]
    assert evaluate(many, big_control, CRITERIA, elapsed_s=10).action == "rollback"
    # no margin: the bare comparison
    bare = Criteria(SOAK, 2 * SOAK, 30, Thresholds(confidence_z=0.0))
    assert evaluate(dip, control(), bare, elapsed_s=10).action == "rollback"


def test_drift_on_few_predictions_is_within_the_noise() -> None:
    """PSI 0.29 from 30 predictions against 100 over three classes is what sampling alone
    does (an end-to-end run rolled a good canary back on exactly that); the same PSI over
    thousands of predictions is a real shift."""

    def board(n: int, m: int) -> Sample:
        live = LiveModel(
            "v2", predictions=n, drift_psi=0.29, classes={"a": n // 3, "b": n - n // 3}
        )
        before = LiveModel("v1", predictions=m, classes={"a": m // 2, "b": m - m // 2})
        return Sample("pi-1", True, True, live, before)

    few = evaluate([board(30, 100)], control(), CRITERIA, elapsed_s=10)
    assert few.action == "wait", few.reason
    assert "drift PSI 0.29 <= 0.25 + 0.47 (noise margin)" in few.reason
    many = evaluate([board(6000, 6000)], control(), CRITERIA, elapsed_s=10)
    assert many.action == "rollback"
    assert many.reason == (
        "canary class drift PSI 0.29 against the previous version > 0.25 + 0.00 (noise margin)"
    )
