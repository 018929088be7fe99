"""Accuracy cost of the privacy options on the demo task (docs/privacy.md); one Markdown table.

One fleet of real ``orchard-agent run`` processes (``benchmarks/federated.py``'s
``OrchardFleet``: a SuperLink, N agents seeded with IID partitions of the synthetic occupancy
data, the coordinator's held-out validation set) runs the same FedAvg schedule once per
configuration:

- ``plain``: FedAvg, no privacy option (the reference);
- ``central:Z``: central DP, Flower's server-side fixed clipping at ``--clip`` and Gaussian
  noise with multiplier Z; cumulative epsilon from Flower's RDP accountant at ``--delta``;
- ``local:EPS``: local DP, ``LocalDpMod`` on each device (clipping and sensitivity
  ``--clip``, per-round epsilon EPS at ``--delta``);
- ``secagg``: SecAgg+ (``SecAggPlusWorkflow`` + ``secaggplus_mod``).

Every private configuration fixes the normalisation statistics from the validation set; the
``plain`` run pools the devices' own. Reported: the coordinator's central accuracy after the
last round (median over ``--seeds`` runs), its difference to ``plain``, the epsilon after the
last round, and the median round time.

    .venv/bin/python benchmarks/privacy.py [--devices 3] [--rounds 5] [--seeds 1]
        [--configs plain,central:0.1,central:0.5,secagg] [--clip 1.0] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]


def _load_federated() -> Any:
    """``benchmarks/federated.py`` as a module (its fleet, tables and cleanup are reused)."""
    spec = importlib.util.spec_from_file_location("orchard_bench_federated", _HERE / "federated.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fed = _load_federated()


def privacy_changes(config: str, args: argparse.Namespace) -> dict[str, Any]:
    """RunSettings changes for one ``--configs`` entry."""
    name, _, value = config.partition(":")
    if name == "plain":
        return {}
    if name == "central":
        return {
            "central_dp": True,
            "central_dp_noise_multiplier": float(value),
            "central_dp_clipping_norm": args.clip,
            "central_dp_delta": args.delta,
        }
    if name == "local":
        return {
            "local_dp": True,
            "local_dp_epsilon": float(value),
            "local_dp_delta": args.delta,
            "local_dp_clipping_norm": args.clip,
            "local_dp_sensitivity": args.clip,
        }
    if name == "secagg":
        return {"secure_aggregation": True}
    raise SystemExit(
        f"expected plain, central:Z, local:EPS or secagg. Received: --configs entry {config!r}"
    )


def epsilon(history: dict[str, Any]) -> str:
    last = history["rounds"][-1].get("privacy", {})
    parts = [f"{p['epsilon']:.3g} (delta {p['delta']:g})" for p in last.values()]
    return ", ".join(parts) or "-"


def run_all(args: argparse.Namespace, work: Path) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in args.configs}
    for seed in range(args.seeds):
        prepared, parts = fed.prepare(args.devices, "iid", seed)
        with fed.OrchardFleet(work / f"seed-{seed}", prepared, parts, seed) as fleet:
            for config in args.configs:
                settings = fleet.settings(
                    num_server_rounds=args.rounds,
                    local_epochs=args.local_epochs,
                    learning_rate=args.lr,
                    quantization="float32",
                    **privacy_changes(config, args),
                )
                started = time.monotonic()
                _, history = fleet.run(settings, f"{config} (seed {seed})")
                rounds = history["rounds"]
                results[config].append(
                    {
                        "seed": seed,
                        "final": rounds[-1]["central"]["metric"],
                        "best": max(r["central"]["metric"] for r in rounds),
                        "initial": history["initial_central"]["metric"],
                        "epsilon": epsilon(history),
                        "round_s": statistics.median(r["duration_s"] for r in rounds),
                        "wall_s": time.monotonic() - started,
                        "bytes_received": statistics.median(r["bytes_received"] for r in rounds),
                        "history": history,
                    }
                )
    return results


def report(args: argparse.Namespace, results: dict[str, list[dict[str, Any]]]) -> str:
    plain = results.get("plain")
    reference = statistics.median(r["final"] for r in plain) if plain else None
    rows = []
    for config, runs in results.items():
        final = statistics.median(r["final"] for r in runs)
        delta = "-" if reference is None else f"{final - reference:+.4f}"
        rows.append(
            [
                config,
                f"{final:.4f}",
                f"{statistics.median(r['best'] for r in runs):.4f}",
                delta,
                runs[-1]["epsilon"],
                f"{statistics.median(r['round_s'] for r in runs):.1f}",
                f"{statistics.median(r['bytes_received'] for r in runs) / args.devices:,.0f}",
            ]
        )
    initial = statistics.median(r["initial"] for runs in results.values() for r in runs)
    header = [
        "config",
        "final acc",
        "best acc",
        "vs plain",
        "epsilon after last round",
        "median round s",
        "bytes up / device / round",
    ]
    notes = (
        f"Central accuracy on the coordinator's validation set; clipping norm {args.clip}, "
        f"delta {args.delta:g}; initial accuracy {initial:.4f}."
    )
    title = (
        f"Privacy options: {args.devices} devices, {args.rounds} rounds, "
        f"{args.local_epochs} local epoch(s), {args.seeds} seed(s)"
    )
    return str(fed.table(title, header, rows, notes))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--devices", type=int, default=3)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--configs", default="plain,central:0.1,central:0.5,secagg")
    p.add_argument("--clip", type=float, default=1.0, help="clipping norm (central and local)")
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--workdir", help="work directory (default: a new one under /tmp)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--json", help="also write every measurement (and run histories) here")
    args = p.parse_args(argv)
    for key in ("devices", "rounds", "local_epochs", "seeds"):
        if getattr(args, key) < 1:
            p.error(f"expected a positive integer. Received: {key}={getattr(args, key)}")
    if args.devices < 2:
        p.error(f"expected at least 2 devices (SecAgg+ needs 2). Received: devices={args.devices}")
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for config in args.configs:
        privacy_changes(config, args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    print(fed.machine() + f", dp-accounting {fed.version('dp-accounting')}", flush=True)
    with fed.workdir(args.workdir, args.keep) as root:
        fed.say(f"work directory {root}")
        results = run_all(args, root)
        text = report(args, results)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"args": vars(args), "results": results, "table": text}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
