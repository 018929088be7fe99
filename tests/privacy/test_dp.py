"""Differential privacy wiring: the run config, Flower's DP wrapper as Orchard uses it, and the
privacy figures recorded per round. The process-level runs are in test_options.py."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping

from coordinator.federation import privacy, strategies
from coordinator.federation.errors import InvalidRunConfig
from coordinator.federation.runconfig import RunSettings
from tests.privacy.inprocess import InProcessGrid

SHAPES = [(6, 4), (4,), (4, 3), (3,)]


def _settings(**changes: Any) -> RunSettings:
    return RunSettings(validation="validation.csv").replace(**changes)


def test_privacy_keys_are_checked_and_named() -> None:
    with pytest.raises(InvalidRunConfig) as info:
        RunSettings.from_mapping(
            {
                "central_dp": {"noise_multiplier": 0},
                "local_dp": {"delta": 1.5},
                "secure_aggregation": {"num_shares": 2.5},
            }
        )
    text = str(info.value)
    assert "run.central_dp.noise_multiplier: expected a number > 0. Received: " in text
    assert "run.local_dp.delta: expected a number in (0, 1). Received: delta=1.5" in text
    assert "run.secure_aggregation.num_shares: expected a fraction in (0, 1] or a whole" in text


def test_the_old_flat_privacy_keys_still_read_and_name_the_new_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = RunSettings.from_mapping(
        {
            "central_dp": True,
            "central_dp_noise_multiplier": 0.5,
            "secagg-clipping-range": 4.0,
            "validation": "v.csv",
        }
    )
    assert settings.central_dp.enabled and settings.central_dp.noise_multiplier == 0.5
    assert settings.secure_aggregation.clipping_range == 4.0
    assert "run.central_dp_noise_multiplier: the old spelling; write run.central_dp." in (
        caplog.text
    )
    assert "run.secagg-clipping-range: the old spelling; write run.secure_aggregation." in (
        caplog.text
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"central_dp": True, "strategy": "fedadam"}, "fedavg or fedprox with central_dp"),
        ({"secure_aggregation": True, "strategy": "fedmedian"}, "with secure_aggregation"),
        ({"secure_aggregation": True, "central_dp": True}, "server-side clipping needs"),
        ({"local_dp": True, "validation": ""}, "run.validation: expected a CSV path"),
        ({"secure_aggregation": True, "secagg_num_shares": 2.0}, "a count of at least 3"),
    ],
)
def test_combinations_that_cannot_work_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRunConfig, match=message):
        _settings(**changes)


def test_central_dp_wraps_the_strategy_with_flowers_accountant() -> None:
    strategy = strategies.build(_settings(central_dp=True, strategy="fedprox"), min_nodes=1)
    assert isinstance(strategy, DifferentialPrivacyServerSideFixedClipping)
    assert type(strategy.strategy).__name__ == "FedProx" and strategy.accountant is not None
    plain = strategies.build(_settings(local_dp=True), min_nodes=1)
    assert type(plain).__name__ == "FedAvg"  # local DP lives on the devices


def _answer(updates: dict[int, tuple[list[np.ndarray], int]]) -> dict[int, Any]:
    """Each device's train handler: the global arrays plus its own update, and its count."""

    def device(update: list[np.ndarray], examples: int) -> Any:
        def handler(msg: Message, context: Context) -> Message:
            sent = msg.content.array_records["arrays"].to_numpy_ndarrays()
            trained = [s + u for s, u in zip(sent, update, strict=True)]
            content = RecordDict(
                {
                    "arrays": ArrayRecord(trained),
                    "metrics": MetricRecord({"num-examples": examples, "loss": 1.0}),
                }
            )
            return Message(content, reply_to=msg)

        return handler

    return {node: device(u, k) for node, (u, k) in updates.items()}


@pytest.mark.usefixtures("task_identity")
def test_updates_are_clipped_averaged_uniformly_and_accounted() -> None:
    clip, z = 0.5, 1e-6  # negligible noise: the aggregate is the mean of clipped updates
    rng = np.random.default_rng(0)
    updates = {
        n: ([rng.normal(0, 1, s).astype(np.float32) for s in SHAPES], k)
        for n, k in ((1, 10), (2, 100), (3, 1000))
    }
    grid = InProcessGrid(_answer(updates), {})
    settings = _settings(
        central_dp=True, central_dp_clipping_norm=clip, central_dp_noise_multiplier=z
    )
    strategy = strategies.build(settings, min_nodes=1)
    global_ = [np.zeros(s, np.float32) for s in SHAPES]
    epsilons = []
    for rnd in (1, 2):
        privacy.expect(strategy, len(list(grid.get_node_ids())), 1.0)
        msgs = strategy.configure_train(rnd, ArrayRecord(global_), ConfigRecord(), grid)
        replies = list(grid.send_and_receive(msgs))
        assert max(privacy.update_norms(replies, global_, [])) > 5 * clip
        aggregated, _ = strategy.aggregate_train(rnd, privacy.uniform(replies))
        assert max(privacy.update_norms(replies, global_, [])) <= clip * (1 + 1e-5)
        epsilons.append(privacy.central_dp_record(strategy)["epsilon"])
    assert aggregated is not None
    clipped = {n: [a * clip / privacy.norm(u) for a in u] for n, (u, _) in updates.items()}
    expected = [np.mean([clipped[n][i] for n in clipped], axis=0) for i in range(len(SHAPES))]
    for got, want in zip(aggregated.to_numpy_ndarrays(), expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4)  # uniform, not by example count
    assert 0 < epsilons[0] < epsilons[1]  # the accountant composes every release


def test_local_dp_record_composes_rounds_with_the_rdp_accountant() -> None:
    s = _settings(
        local_dp=True, local_dp_epsilon=2.0, local_dp_delta=1e-5, local_dp_sensitivity=0.1
    )
    sigma = 0.1 * math.sqrt(2 * math.log(1.25 / 1e-5)) / 2.0
    one, ten = privacy.local_dp_record(s, 1), privacy.local_dp_record(s, 10)
    assert one["noise_stddev"] == pytest.approx(sigma)
    assert one["epsilon_round"] == 2.0 and one["delta"] == 1e-5
    assert 0 < one["epsilon"] < ten["epsilon"] < ten["epsilon_basic_composition"] == 20.0


def test_fixed_statistics_replace_whatever_came_back() -> None:
    fixed = [np.full(3, 7.0, np.float32), np.ones(3, np.float32), np.zeros((3, 2), np.float32)]
    noisy = [a + 0.3 for a in fixed]
    out = privacy.fix_statistics(noisy, fixed, privacy.frozen_indices([(0, 1)]))
    np.testing.assert_array_equal(out[0], fixed[0])
    np.testing.assert_array_equal(out[1], fixed[1])
    np.testing.assert_array_equal(out[2], noisy[2])
    assert privacy.round_config(3, [0, 1]) == {"server-round": 3, "frozen-arrays": "0,1"}
