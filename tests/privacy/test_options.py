"""The privacy options on a real fleet: a SuperLink and three ``orchard-agent run`` processes.

One round each: central DP (Flower's server-side fixed clipping + RDP accountant), local DP
(``LocalDpMod`` on the devices' train handler) and SecAgg+ (``SecAggPlusWorkflow`` +
``secaggplus_mod``). history.json must carry the privacy figures, and the figures must show
the mechanism acted: updates clipped to the norm, noise of the configured size on the
aggregate (central) or on every update (local), and for SecAgg+ no array from any device ever
reaching the server while the aggregate still learns.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.federation.messages import TRAIN_KEYS
from coordinator.demo import datasets
from coordinator.demo.fleet import Device, free_port, wait_connected
from coordinator.demo.partition import Partitioning, split
from coordinator.federation.runconfig import RunSettings
from coordinator.federation.submit import follow, submit
from coordinator.federation.superlink import SuperLink, SuperLinkSettings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900), pytest.mark.fleet]


@dataclass
class Fleet:
    link: SuperLink
    devices: list[Device]
    prepared: datasets.Prepared
    work: Path

    def run(self, **changes: Any) -> dict[str, Any]:
        settings = RunSettings(
            num_server_rounds=1,
            min_devices=3,
            round_timeout=180.0,
            wait_for_devices=60.0,
            local_epochs=1,
            model_spec=json.dumps(self.prepared.spec.to_dict()),
            model_name="priv",
            quantization="float32",
            out_dir=str(self.work / "runs"),
            validation=str(self.work / "validation.csv"),
        ).replace(**changes)
        run_id = submit(self.link, settings, self.work / "submit")
        history = follow(self.link, run_id, settings, timeout=500)
        assert history["status"] == "completed", history.get("error")
        return history


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    work = tmp_path_factory.mktemp("privacy")
    prepared = datasets.prepare("synthetic", "classify", 3, seed=2)
    parts = split(prepared.train, 3, Partitioning.parse("iid"), seed=2)
    datasets.write_validation(work / "validation.csv", prepared.validation)
    link = SuperLink(SuperLinkSettings(port=free_port(), workdir=work / "link"))
    link.start()
    devices = [Device(i, f"dp-{i + 1}", work / f"d{i + 1}") for i in range(3)]
    try:
        for device, part in zip(devices, parts, strict=True):
            sensor = {"driver": "synthetic", "interval_s": 3600.0, "device_index": device.index}
            device.configure(
                superlink=link.settings.address,
                sensor=sensor,
                extra={"training": {"idle_scheduling": False}},  # see test_e2e
            )
            device.seed(part)
            device.start()
        wait_connected(devices, 180)
        yield Fleet(link, devices, prepared, work)
    finally:
        for device in devices:
            device.stop()
        link.stop()


def _trainable(history: dict[str, Any]) -> int:
    model = history["model"]
    frozen = set(model["frozen_arrays"])
    assert frozen, "a private run freezes the normalisation statistics"
    return sum(math.prod(s) for i, s in enumerate(model["arrays"]) if i not in frozen)


def test_central_dp_clips_every_update_and_noises_the_mean(fleet: Fleet) -> None:
    z, clip = 2.0, 0.01
    history = fleet.run(
        central_dp=True,
        central_dp_noise_multiplier=z,
        central_dp_clipping_norm=clip,
        central_dp_delta=1e-5,
    )
    record = history["rounds"][0]
    dp = record["privacy"]["central_dp"]
    assert dp["devices"] == 3 and dp["releases"] == 1
    assert dp["noise_stddev"] == pytest.approx(z * clip / 3)
    assert 0 < dp["epsilon"] < 100 and dp["delta"] == 1e-5
    updates = record["updates"]
    assert len(updates["received"]) == 3 and updates["frozen_max_change"] == 0.0
    assert max(updates["received"]) > clip  # clipping had work to do ...
    assert max(updates["clipped"]) <= clip * (1 + 1e-4)  # ... and did it
    expected = dp["noise_stddev"] * math.sqrt(_trainable(history))
    # the mean of clipped updates is at most `clip` long; the rest is Flower's noise
    assert 0.8 * expected - clip <= record["update_norm"] <= 1.2 * expected + clip


def test_local_dp_noises_every_update_on_the_device(fleet: Fleet) -> None:
    clip, epsilon, delta = 0.01, 5.0, 1e-5
    history = fleet.run(
        local_dp=True,
        local_dp_clipping_norm=clip,
        local_dp_sensitivity=clip,
        local_dp_epsilon=epsilon,
        local_dp_delta=delta,
    )
    record = history["rounds"][0]
    dp = record["privacy"]["local_dp"]
    sigma = clip * math.sqrt(2 * math.log(1.25 / delta)) / epsilon
    assert dp["noise_stddev"] == pytest.approx(sigma)
    assert dp["epsilon_round"] == epsilon and dp["delta_round"] == delta
    assert 0 < dp["epsilon"] <= epsilon * 1.5 and dp["releases"] == 1
    expected = sigma * math.sqrt(_trainable(history))
    received = record["updates"]["received"]
    assert len(received) == 3
    for norm in received:  # clipped to `clip` on the device, then noised there
        assert 0.8 * expected - clip <= norm <= 1.2 * expected + clip
    assert record["updates"]["frozen_max_change"] > 0  # LocalDpMod noises every array ...
    assert record["central"]["metric"] > 0  # ... and the server puts the statistics back


def test_secure_aggregation_learns_without_the_server_seeing_an_update(fleet: Fleet) -> None:
    history = fleet.run(secure_aggregation=True, local_epochs=3)
    record = history["rounds"][0]
    secagg = record["secure_aggregation"]
    assert [s["ok"] for s in secagg["stages"]] == [3, 3, 3, 3]
    train = record["phases"]["train"]
    assert len(train["replies"]) == 3 and not train["no_reply"]
    for stage in train["replies"]:
        assert "error" not in stage and stage["arrays"] == []  # masked vectors only
    assert set(record["train"]) == set(TRAIN_KEYS)  # the declared metrics, in the clear
    initial, final = history["initial_central"]["metric"], record["central"]["metric"]
    assert final >= 0.7 and final - initial >= 0.2, (initial, final)
    assert 0 < record["update_norm"] < 50
