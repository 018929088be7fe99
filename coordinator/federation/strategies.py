"""Strategy registry: config name -> a configured Message-API strategy from Flower.

``get(name)`` raises a helpful error on an unknown name (as ``keras.activations.get``).
Every strategy gets the same node counts, so ``min-devices`` means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flwr.serverapp.strategy import (
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
)

from coordinator.federation import privacy
from coordinator.federation.errors import InvalidRunConfig
from coordinator.federation.runconfig import RunSettings, StrategyOptions


def _fedopt(o: StrategyOptions) -> dict[str, Any]:
    """FedAdam's and FedYogi's server optimiser parameters."""
    return {"eta": o.eta, "eta_l": o.eta_l, "beta_1": o.beta_1, "beta_2": o.beta_2, "tau": o.tau}


Factory = Callable[[RunSettings, dict[str, Any]], Any]

_REGISTRY: dict[str, Factory] = {
    "fedavg": lambda s, common: FedAvg(**common),
    "fedprox": lambda s, common: FedProx(proximal_mu=s.strategy_options.proximal_mu, **common),
    "fedadam": lambda s, common: FedAdam(**_fedopt(s.strategy_options), **common),
    "fedyogi": lambda s, common: FedYogi(**_fedopt(s.strategy_options), **common),
    "fedavgm": lambda s, common: FedAvgM(
        server_learning_rate=s.strategy_options.server_learning_rate,
        server_momentum=s.strategy_options.server_momentum,
        **common,
    ),
    "fedtrimmedavg": lambda s, common: FedTrimmedAvg(beta=s.strategy_options.trim_beta, **common),
    "fedmedian": lambda s, common: FedMedian(**common),
}


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get(name: str) -> Factory:
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise InvalidRunConfig(
            [f"run.strategy: expected one of {', '.join(_REGISTRY)}. Received: strategy={name!r}"]
        ) from None


def build(settings: RunSettings, min_nodes: int) -> Any:
    """The strategy named in ``settings``, sampling from at least ``min_nodes`` nodes.

    With ``central-dp`` it comes wrapped in Flower's server-side fixed-clipping DP strategy
    (:func:`coordinator.federation.privacy.central_dp`).
    """
    common = {
        "fraction_train": settings.fraction_train,
        "fraction_evaluate": settings.fraction_evaluate,
        "min_train_nodes": min_nodes,
        "min_evaluate_nodes": min_nodes if settings.fraction_evaluate > 0 else 0,
        "min_available_nodes": min_nodes,
    }
    strategy = get(settings.strategy)(settings, common)
    return privacy.central_dp(strategy, settings) if settings.central_dp.enabled else strategy
