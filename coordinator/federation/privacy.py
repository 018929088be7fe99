"""Privacy options of a run: central DP, local-DP accounting, SecAgg+, fixed statistics.

Everything here is Flower's own machinery, configured from :class:`RunSettings`:

- **central DP** wraps the strategy in ``DifferentialPrivacyServerSideFixedClipping`` with
  Flower's RDP accountant (``flwr[dp]``, Google's ``dp-accounting``): each device's update is
  clipped to ``central-dp-clipping-norm``, the mean gets Gaussian noise of
  ``noise-multiplier * clipping-norm / devices``, and the cumulative (epsilon, delta) is read
  after every release. The accountant requires devices to be averaged uniformly, so train
  replies are weighted 1 each (:func:`uniform`).
- **local DP** is ``LocalDpMod`` on the devices' train handler; here it is only accounted
  (:func:`local_dp_record`).
- **SecAgg+** runs one train phase through ``SecAggPlusWorkflow`` (:func:`secure_train`), the
  only way Flower 1.41 offers it: the workflow needs a ``LegacyContext`` with a legacy
  strategy and client manager, which this module builds for that phase alone. Devices send
  masked updates (trained minus global); the server learns only their weighted sum.
- **fixed statistics**: with any option on, the input normalisation statistics come from the
  coordinator's validation set and never change (:func:`fix_statistics`); devices are told
  which arrays are frozen (``frozen-arrays`` in the round config) and send them back as
  received, so clipping, noise and masking act on trained weights only and no device ever
  sends statistics of its own readings.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping
from flwr.supercore.privacy_accounting import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    SamplingMethod,
)
from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

from agent.federation.round_config import PROXIMAL_MU as PROXIMAL_MU
from agent.federation.round_config import RoundConfig
from coordinator.federation.errors import RunFailed
from coordinator.federation.grid import RoundGrid
from coordinator.federation.runconfig import RunSettings

logger = logging.getLogger(__name__)

# Without sampling amplification the population size does not enter the bound; Flower's
# accountant still wants one, at least as large as any round's sample.
POPULATION = 2**31 - 1
WEIGHT_KEY = "num-examples"


def _accountant(delta: float) -> RdpAccountant:
    config = PrivacyConfig(
        target_delta=delta,
        population_size=POPULATION,
        neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
        sampling_method=SamplingMethod.NO_AMPLIFICATION,
    )
    try:
        return RdpAccountant(config)
    except ImportError as exc:
        raise RunFailed(
            "DP accounting needs Google's dp-accounting: pip install 'flwr[dp]' on the "
            f"coordinator ({exc})"
        ) from exc


def require_accounting() -> None:
    """Fail before round 1, not after it, when ``dp-accounting`` is missing."""
    _accountant(1e-5)


# -- central DP --------------------------------------------------------------------------
def central_dp(strategy: Any, settings: RunSettings) -> DifferentialPrivacyServerSideFixedClipping:
    """``strategy`` wrapped in Flower's server-side fixed-clipping DP, with its accountant."""
    return DifferentialPrivacyServerSideFixedClipping(
        strategy,
        noise_multiplier=settings.central_dp.noise_multiplier,
        clipping_norm=settings.central_dp.clipping_norm,
        num_sampled_clients=1,  # set per round by expect()
        accountant=_accountant(settings.central_dp.delta),
    )


def expect(strategy: Any, nodes: int, fraction: float) -> None:
    """Tell a DP wrapper how many devices this round samples (FedAvg's own formula)."""
    if isinstance(strategy, DifferentialPrivacyServerSideFixedClipping):
        strategy.num_sampled_clients = max(int(nodes * fraction), 1)


def uniform(replies: Iterable[Message]) -> list[Message]:
    """Weight every train reply 1 (the accountant's precondition); counts stay in phases."""
    out = list(replies)
    for msg in out:
        if not msg.has_error():
            for record in msg.content.metric_records.values():
                record[WEIGHT_KEY] = 1
    return out


def central_dp_record(strategy: DifferentialPrivacyServerSideFixedClipping) -> dict[str, Any]:
    spent = strategy.privacy_spent()
    n = strategy.num_sampled_clients
    return {
        "mechanism": "gaussian, server-side fixed clipping (flwr)",
        "noise_multiplier": strategy.noise_multiplier,
        "clipping_norm": strategy.clipping_norm,
        "devices": n,
        "noise_stddev": strategy.noise_multiplier * strategy.clipping_norm / n,
        "epsilon": None if spent is None else spent.epsilon,
        "delta": None if spent is None else spent.delta,
        "releases": None if spent is None else spent.num_releases,
        "accountant": "rdp (dp-accounting), add/remove one device, no sampling amplification",
    }


# -- local DP (accounting only; the noise is added on the devices) -------------------------
def local_dp_stddev(settings: RunSettings) -> float:
    """LocalDpMod's noise: sensitivity * sqrt(2 ln(1.25 / delta)) / epsilon."""
    return (
        settings.local_dp.sensitivity
        * math.sqrt(2 * math.log(1.25 / settings.local_dp.delta))
        / settings.local_dp.epsilon
    )


def local_dp_record(settings: RunSettings, releases: int) -> dict[str, Any]:
    """Per round: the mechanism's (epsilon, delta); cumulative after ``releases`` rounds."""
    sigma = local_dp_stddev(settings)
    accountant = _accountant(settings.local_dp.delta)
    z = sigma / settings.local_dp.sensitivity
    accountant.compose(GaussianPrivacyEvent(z, 1, POPULATION), count=releases)
    spent = accountant.get_privacy_spent()
    return {
        "mechanism": "gaussian, each device clips and noises its own update (flwr LocalDpMod)",
        "clipping_norm": settings.local_dp.clipping_norm,
        "sensitivity": settings.local_dp.sensitivity,
        "noise_stddev": sigma,
        "epsilon_round": settings.local_dp.epsilon,
        "delta_round": settings.local_dp.delta,
        "epsilon": spent.epsilon,
        "delta": spent.delta,
        "epsilon_basic_composition": releases * settings.local_dp.epsilon,
        "delta_basic_composition": releases * settings.local_dp.delta,
        "releases": releases,
        "accountant": "per device, every round counted; rdp (dp-accounting) at delta_round",
    }


# -- fixed normalisation statistics ----------------------------------------------------------
def frozen_indices(pairs: Sequence[tuple[int, int]]) -> list[int]:
    return sorted(i for pair in pairs for i in pair)


def round_config(rnd: int, frozen: Sequence[int]) -> dict[str, int | float | str]:
    """Config every train message carries in a private run (legacy-safe scalar values)."""
    return RoundConfig(server_round=rnd, frozen_arrays=tuple(frozen)).encode()


def fix_statistics(
    arrays: list[np.ndarray], fixed: Sequence[np.ndarray], frozen: Sequence[int]
) -> list[np.ndarray]:
    """``arrays`` with the frozen entries put back (noise or masking error on them dropped)."""
    out = list(arrays)
    for i in frozen:
        out[i] = np.asarray(fixed[i], np.float32)
    return out


def norm(update: Iterable[np.ndarray]) -> float:
    return float(np.sqrt(sum(float(np.sum(np.square(u, dtype=np.float64))) for u in update)))


def update_norms(
    replies: Iterable[Message], arrays: Sequence[np.ndarray], frozen: Sequence[int]
) -> list[float]:
    """L2 norm of each reply's update (trained minus global) over the trained arrays."""
    skip = set(frozen)
    out = []
    for msg in replies:
        if msg.has_error():
            continue
        for record in msg.content.array_records.values():
            pairs = enumerate(zip(record.to_numpy_ndarrays(), arrays, strict=True))
            out.append(norm(n - a for i, (n, a) in pairs if i not in skip))
    return out


def frozen_change(
    replies: Iterable[Message], arrays: Sequence[np.ndarray], frozen: Sequence[int]
) -> float:
    """Largest change any reply made to a frozen array (0 unless noise was added on-device)."""
    worst = 0.0
    for msg in replies:
        if msg.has_error():
            continue
        for record in msg.content.array_records.values():
            new = record.to_numpy_ndarrays()
            for i in frozen:
                worst = max(worst, float(np.max(np.abs(new[i] - arrays[i]), initial=0.0)))
    return worst


# -- SecAgg+ ---------------------------------------------------------------------------------
def _fraction_or_count(value: float) -> int | float:
    return value if value <= 1 else int(value)


def _weighted_metrics(results: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    total = sum(n for n, _ in results) or 1
    keys = {k for _, m in results for k, v in m.items() if isinstance(v, int | float)}
    return {k: sum(n * float(m.get(k, 0.0)) for n, m in results) / total for k in sorted(keys)}


def secure_train(
    grid: Grid,
    settings: RunSettings,
    rnd: int,
    arrays: list[np.ndarray],
    nodes: Sequence[int],
    config: dict[str, int | str | float],
) -> tuple[list[np.ndarray] | None, dict[str, float] | None, list[dict[str, Any]]]:
    """One SecAgg+ train phase through ``grid`` (the round's, unwrapped): the new global
    arrays and weighted train metrics, or None for both; and the record of every exchange."""
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.compat.common import recorddict_compat as compat
    from flwr.server import ServerConfig
    from flwr.server.client_manager import SimpleClientManager
    from flwr.server.compat.grid_client_proxy import GridClientProxy
    from flwr.server.compat.legacy_context import LegacyContext
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import SecAggPlusWorkflow
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key

    if len(nodes) < 2:
        raise RunFailed(f"round {rnd}: SecAgg+ needs at least 2 devices, {len(nodes)} available")
    grid = RoundGrid(grid)  # records every stage: destinations, replies, bytes
    manager = SimpleClientManager()
    for node in nodes:
        manager.register(GridClientProxy(node, grid, grid.run.run_id))
    strategy = FedAvg(
        fraction_fit=settings.fraction_train,
        fraction_evaluate=0.0,
        min_fit_clients=2,
        min_evaluate_clients=0,
        min_available_clients=len(nodes),
        on_fit_config_fn=lambda _rnd: dict(config),
        fit_metrics_aggregation_fn=_weighted_metrics,
    )
    base = Context(
        run_id=grid.run.run_id, node_id=0, node_config={}, state=RecordDict(), run_config={}
    )
    context = LegacyContext(base, ServerConfig(num_rounds=rnd), strategy, manager)
    start = compat.parameters_to_arrayrecord(ndarrays_to_parameters(arrays), keep_input=True)
    context.state.array_records[MAIN_PARAMS_RECORD] = start
    context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({Key.CURRENT_ROUND: rnd})
    workflow = SecAggPlusWorkflow(
        num_shares=_fraction_or_count(settings.secure_aggregation.num_shares),
        reconstruction_threshold=_fraction_or_count(
            settings.secure_aggregation.reconstruction_threshold
        ),
        max_weight=settings.secure_aggregation.max_weight,
        clipping_range=settings.secure_aggregation.clipping_range,
        timeout=settings.round_timeout,
    )
    workflow(grid, context)
    result: ArrayRecord = context.state.array_records[MAIN_PARAMS_RECORD]
    if result is start:
        logger.warning("round %d: secure aggregation halted; the global model stays", rnd)
        return None, None, [phase.to_dict() for phase in grid.phases]
    update = parameters_to_ndarrays(compat.arrayrecord_to_parameters(result, keep_input=True))
    new = [np.asarray(a + d, np.float32) for a, d in zip(arrays, update, strict=True)]
    fit = context.history.metrics_distributed_fit
    metrics = {k: float(v[-1][1]) for k, v in fit.items() if v and v[-1][0] == rnd}
    return new, metrics or None, [phase.to_dict() for phase in grid.phases]


def secagg_record(settings: RunSettings, stages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "protocol": "SecAgg+ (flwr SecAggPlusWorkflow + secaggplus_mod)",
        "num_shares": _fraction_or_count(settings.secure_aggregation.num_shares),
        "reconstruction_threshold": _fraction_or_count(
            settings.secure_aggregation.reconstruction_threshold
        ),
        "clipping_range": settings.secure_aggregation.clipping_range,
        "max_weight": settings.secure_aggregation.max_weight,
        "stages": [
            {"sent_to": len(s["sent_to"]), "ok": sum("error" not in r for r in s["replies"])}
            for s in stages
        ],
    }


def merge_stages(stages: list[dict[str, Any]]) -> dict[str, Any]:
    """The SecAgg+ stages as one train phase: a device trained if it answered every stage."""
    if not stages:
        return {"sent_to": [], "bytes_sent": 0, "bytes_received": 0, "replies": [], "no_reply": []}
    first = stages[0]
    collected = stages[2]["replies"] if len(stages) > 2 else []
    answered = {int(r["node_id"]) for r in collected if "error" not in r}
    failed: dict[int, dict[str, Any]] = {}
    for stage in stages:
        for reply in stage["replies"]:
            if "error" in reply and int(reply["node_id"]) not in answered:
                failed.setdefault(int(reply["node_id"]), reply)
    replies = [r for r in collected if "error" not in r] + list(failed.values())
    no_reply = [n for n in first["sent_to"] if n not in answered and n not in failed]
    return {
        "sent_to": first["sent_to"],
        "bytes_sent": sum(s["bytes_sent"] for s in stages),
        "bytes_received": sum(s["bytes_received"] for s in stages),
        "replies": replies,
        "no_reply": no_reply,
    }
