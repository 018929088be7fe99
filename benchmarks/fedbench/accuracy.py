"""Part ``accuracy``: federated vs centralised accuracy on the same data.

Centralised = one Keras model (``models.training.fit``) on the pooled rows the devices train
on, evaluated on the coordinator's validation set, median of 3 seeds, as many epochs as a
device gets in the whole run (rounds x local epochs). Federated = N real agents (IID and
Dirichlet 0.3) x (FedAvg, FedProx), the coordinator's central accuracy after the last round
(and the best round).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.fedbench.common import device_rows, median, prepare, say, table
from benchmarks.fedbench.fleet import OrchardFleet
from coordinator.data import Table, arrays_for
from coordinator.demo import datasets


def centralised(
    prepared: datasets.Prepared, parts: list[Table], epochs: int, lr: float, seeds: int = 3
) -> list[float]:
    import keras

    from models import families
    from models.training import TrainSettings, evaluate, fit

    x, y = device_rows(prepared, parts)
    xv, yv = arrays_for(prepared.spec, prepared.validation)
    out = []
    for seed in range(seeds):
        keras.utils.set_random_seed(seed)
        model = families.build(prepared.spec)
        fit(
            model,
            prepared.spec,
            (x, y),
            TrainSettings(epochs=epochs, batch_size=32, learning_rate=lr, seed=seed),
        )
        out.append(evaluate(model, prepared.spec, (xv.astype(np.float32), yv))["accuracy"])
    return out


def part_accuracy(args: argparse.Namespace, work: Path, results: dict[str, Any]) -> str:
    rows = []
    runs = results.setdefault("accuracy_runs", [])
    mix: list[str] = []
    epochs = args.rounds * args.local_epochs
    for partition in args.partitions:
        prepared, parts = prepare(args.devices, partition, args.seed)
        say(
            f"accuracy: {partition}, rows per device {[len(p) for p in parts]}; "
            f"centralised baseline ({epochs} epochs x 3 seeds) ..."
        )
        labels = prepared.spec.labels
        mix.append(
            f"{partition}: "
            + "; ".join(
                "/".join(str(int(np.sum(part.labels == name))) for name in labels) for part in parts
            )
            + f" ({'/'.join(labels)} rows per device)"
        )
        cent = centralised(prepared, parts, epochs, args.lr)
        c_med = median(cent)
        say(f"accuracy: centralised {partition}: {cent}")
        with OrchardFleet(
            work / f"acc-{partition.replace(':', '')}", prepared, parts, args.seed
        ) as fleet:
            for strategy in args.strategies:
                settings = fleet.settings(
                    num_server_rounds=args.rounds,
                    strategy=strategy,
                    local_epochs=args.local_epochs,
                    learning_rate=args.lr,
                    proximal_mu=args.mu,
                    quantization="float32",
                )
                t0 = time.monotonic()
                run_id, history = fleet.run(settings, f"{partition} {strategy}")
                wall = time.monotonic() - t0
                curve = [
                    float((r.get("central") or {}).get("metric", float("nan")))
                    for r in history["rounds"]
                ]
                reach = next((i + 1 for i, a in enumerate(curve) if a >= 0.97 * c_med), None)
                runs.append(
                    {
                        "partition": partition,
                        "strategy": strategy,
                        "run_id": run_id,
                        "centralised": cent,
                        "curve": curve,
                        "wall_s": wall,
                        "history": history,
                    }
                )
                rows.append(
                    [
                        partition,
                        strategy,
                        f"{c_med:.4f}",
                        f"{curve[-1]:.4f}",
                        f"{curve[-1] / c_med:.1%}",
                        f"{max(curve):.4f} (r{int(np.argmax(curve)) + 1})",
                        "-" if reach is None else reach,
                        len(curve),
                        f"{median([r['duration_s'] for r in history['rounds']]):.1f}",
                    ]
                )
    return table(
        f"Federated vs centralised accuracy ({args.devices} devices, {args.local_epochs} local "
        f"epoch(s)/round, lr {args.lr}, FedProx mu {args.mu})",
        [
            "partition",
            "strategy",
            "centralised acc (median of 3)",
            "federated final acc",
            "final / centralised",
            "best acc (round)",
            "first round >= 97 %",
            "rounds",
            "median round s",
        ],
        rows,
        "Central accuracy = the coordinator's validation set (the same rows for both). "
        "Targets: >= 97 % of centralised (IID), >= 90 % under Dirichlet 0.3 (better strategy). "
        "Label mix: " + " | ".join(mix),
    )
