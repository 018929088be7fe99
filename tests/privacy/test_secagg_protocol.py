"""SecAgg+ end to end in one process: the coordinator's train phase and the devices' mods.

``privacy.secure_train`` (Flower's ``SecAggPlusWorkflow`` in a ``LegacyContext``) talks to three
devices whose train chain is the real one from ``agent.clientapp.app`` (Flower's
``secaggplus_mod`` around our update step, optionally ``LocalDpMod``). Only two things are
replaced: the network (messages are copied and handed over in process, with Flower's task
identity set as the SuperNode would) and the trainer at the end of the chain, which returns
known updates, so the aggregate can be checked exactly. The process-level test of the same
path is tests/privacy/test_options.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from flwr.app import Context, Error, Message
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.compat.common import recorddict_compat as compat

from agent.clientapp import app as client_app
from coordinator.federation import privacy
from coordinator.federation.runconfig import RunSettings
from tests.privacy.inprocess import InProcessGrid

pytestmark = pytest.mark.usefixtures("task_identity")
Handler = Callable[[Message, Context], Message]
SHAPES = [(5, 4), (4,), (4, 3), (3,)]


def _device(update: list[np.ndarray], examples: int, fail: bool = False) -> Handler:
    """The end of a device's chain: the trainer's answer (global + a known update)."""

    def trainer(msg: Message, context: Context) -> Message:
        if fail:
            return Message(Error(code=603, reason="trainer crashed"), reply_to=msg)
        sent = msg.content.array_records[client_app.LEGACY_IN].to_numpy_ndarrays()
        trained = [s + u for s, u in zip(sent, update, strict=True)]
        fitres = FitRes(
            Status(Code.OK, ""),
            ndarrays_to_parameters(trained),
            examples,
            {"loss": 0.25 * examples},
        )
        return Message(compat.fitres_to_recorddict(fitres, keep_input=False), reply_to=msg)

    def chain(msg: Message, context: Context) -> Message:
        def inner(m: Message, c: Context) -> Message:
            return client_app.local_dp(m, c, trainer)

        return client_app.secure_aggregation(msg, context, inner)

    return chain


def _run(
    updates: list[list[np.ndarray]], examples: list[int], run_config: dict[str, Any], **kw: Any
) -> tuple[list[np.ndarray], list[np.ndarray] | None, dict[str, float] | None, InProcessGrid]:
    rng = np.random.default_rng(1)
    global_ = [rng.normal(0, 1, s).astype(np.float32) for s in SHAPES]
    failing = kw.pop("failing", ())
    nodes = [101, 202, 303]
    devices = zip(nodes, updates, examples, strict=True)
    chains = {n: _device(u, k, fail=n in failing) for n, u, k in devices}
    grid = InProcessGrid(chains, run_config)
    settings = RunSettings(validation="v.csv").replace(secure_aggregation=True, **kw)
    new, metrics, stages = privacy.secure_train(
        grid, settings, 1, global_, nodes, {"server-round": 1}
    )
    grid.phase = privacy.merge_stages(stages)  # history.json's train phase
    return global_, new, metrics, grid


def _updates(seed: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[rng.normal(0, 0.05, s).astype(np.float32) for s in SHAPES] for _ in range(3)]


def test_the_server_gets_the_weighted_mean_update_and_never_a_device_update() -> None:
    updates, examples = _updates(2), [100, 300, 600]
    global_, new, metrics, grid = _run(updates, examples, {"secure-aggregation": True})
    assert new is not None
    expected = [
        g + sum(k * u[i] for u, k in zip(updates, examples, strict=True)) / sum(examples)
        for i, g in enumerate(global_)
    ]
    for got, want in zip(new, expected, strict=True):
        np.testing.assert_allclose(got, want, atol=2e-5)
    assert metrics == pytest.approx({"loss": 0.25 * sum(k * k for k in examples) / sum(examples)})
    # what reached the server: masked integer vectors, never an ArrayRecord with values
    assert len(grid.received) == 12  # 3 devices x 4 stages
    assert all(not m.has_error() for m in grid.received)
    for reply in grid.received:
        assert all(len(record) == 0 for record in reply.content.array_records.values())
    configs = [m.content.config_records[RECORD_KEY_CONFIGS] for m in grid.received]
    masked = [c[Key.MASKED_PARAMETERS] for c in configs if Key.MASKED_PARAMETERS in c]
    assert len(masked) == 3 and all(isinstance(v, list) for v in masked)
    # history.json's train phase: every device trained, none sent an array
    assert sorted(r["node_id"] for r in grid.phase["replies"]) == [101, 202, 303]
    assert all(r["arrays"] == [] for r in grid.phase["replies"])
    assert grid.phase["bytes_received"] > 0 and grid.phase["no_reply"] == []


def test_a_device_failing_mid_protocol_is_dropped_and_the_rest_still_aggregate() -> None:
    updates, examples = _updates(3), [200, 200, 400]
    global_, new, _, grid = _run(updates, examples, {"secure-aggregation": True}, failing=(202,))
    assert new is not None
    kept = [(u, k) for u, k, n in zip(updates, examples, [101, 202, 303], strict=True) if n != 202]
    total = sum(k for _, k in kept)
    for i, got in enumerate(new):
        want = global_[i] + sum(k * u[i] for u, k in kept) / total
        np.testing.assert_allclose(got, want, atol=2e-5)
    errors = [m for m in grid.received if m.has_error()]
    assert len(errors) == 1 and "trainer crashed" in errors[0].error.reason
    failed = [r for r in grid.phase["replies"] if "error" in r]
    assert [r["node_id"] for r in failed] == [202] and len(grid.phase["replies"]) == 3


def test_local_dp_inside_secagg_clips_and_noises_each_update() -> None:
    updates, examples = _updates(4), [300, 300, 300]
    dp = {
        "secure-aggregation": True,
        "local-dp": True,
        "local-dp-clipping-norm": 0.01,
        "local-dp-sensitivity": 0.01,
        "local-dp-epsilon": 5.0,
        "local-dp-delta": 1e-5,
    }
    global_, new, _, _ = _run(updates, examples, dp)
    assert new is not None
    change = privacy.norm(n - g for n, g in zip(new, global_, strict=True))
    clean = privacy.norm(
        sum(u[i] for u in updates) / 3 for i in range(len(SHAPES))
    )  # what plain SecAgg+ would give
    sigma = 0.01 * np.sqrt(2 * np.log(1.25 / 1e-5)) / 5.0
    params = sum(int(np.prod(s)) for s in SHAPES)
    expected_noise = sigma * np.sqrt(params / 3)  # the mean of 3 independent noises
    assert clean > 0.1  # unclipped the updates would move the model a lot ...
    assert change < 0.01 + 3 * expected_noise  # ... clipped to 0.01 plus the noise
    assert change > 0.5 * expected_noise  # and the noise is there
