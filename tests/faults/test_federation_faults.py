"""Federation faults on real processes: a SuperLink, two ``orchard-agent run`` devices with their
SuperNodes and trainers, runs submitted through ``flwr run``.

tests/coordinator/federation/test_e2e.py covers a device over its memory budget every round,
a killed SuperNode and a device dying mid-round. Here: the SuperLink itself is SIGKILLed
mid-round and restarted on the same address and database, and a trainer overruns its time
budget in one round and must work again in the next. Both share one fleet (tests/faults/
conftest.py); the promises are checked by the scenarios' ``problems()``, shared with
benchmarks/chaos.py.
"""

from __future__ import annotations

import pytest

from tests.faults.net_scenarios import OVER_BUDGET, FedFleet, superlink_kills, trainer_hang

pytestmark = [pytest.mark.slow, pytest.mark.fleet]


@pytest.mark.timeout(600)
def test_a_superlink_killed_mid_round_comes_back_and_the_fleet_rejoins(fleet: FedFleet) -> None:
    result = superlink_kills(fleet, kills=1)

    # predictions answered 200 throughout on every device; the SuperLink's children did not
    # outlive it; the interrupted run ended (failed, not resumed) instead of hanging "running";
    # every SuperNode reported the outage ("backoff") and rejoined with its node id; and a new
    # run trained on every device
    assert result.problems() == [], result
    (kill,) = result.kills
    assert kill.run_status == "finished:failed", kill
    assert result.answered == result.nodes and len(result.nodes) == len(fleet.devices)


@pytest.mark.timeout(600)
def test_a_trainer_over_its_time_budget_is_stopped_reported_and_the_next_round_works(
    fleet: FedFleet,
) -> None:
    result = trainer_hang(fleet)

    # round 1: the watchdog killed the frozen trainer and the round says why (error code and
    # budget), /healthz said over_time; round 2: a fresh trainer trained within the budget;
    # predictions answered 200 throughout
    assert result.problems() == [], result
    first, second = result.replies
    assert first["error"]["code"] == OVER_BUDGET and "round ran" in first["error"]["reason"]
    assert "error" not in second and second["metric_keys"], second
    assert result.outcomes[-2:] == ["over_time", "ok"], result.outcomes
