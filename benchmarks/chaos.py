"""Chaos bench: the long versions of the fault suite (tests/faults), one table of promises.

Real processes throughout: ``orchard-agent run``, Mosquitto, Flower's SuperLink and SuperNodes,
the trainer; only the network (tests/netproxy.py) and the board's sysfs are simulated.

- the broker stopped for ``--broker-down-s`` (default 10 min) with the default outbox bound,
  and for ``--tight-down-s`` with a bound of ``--tight-bound`` (drop-oldest, counted);
- the agent's link cut and black-holed while the broker stays up (Last Will ``lost``);
- the SuperLink SIGKILLed mid-round ``--superlink-kills`` times and restarted on the same
  address and database, predictions hammered meanwhile, then a new run;
- a trainer frozen in round 1 (over its time budget), round 2 must work;
- with tests/faults/agent_scenarios.py: the agent SIGKILLed at every step of a model swap
  (``--swap-rounds`` times over) and a store writer SIGKILLed ``--store-kills`` times.

    .venv/bin/python benchmarks/chaos.py            # about 25 minutes on 2 cores
    .venv/bin/python benchmarks/chaos.py --quick    # a smoke run, about 5 minutes
    .venv/bin/python benchmarks/chaos.py --only broker,link

Exit status 1 when a promise was broken.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))  # tests/ holds the scenarios
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from benchmarks.machine import describe  # noqa: E402
from tests.brokers import MOSQUITTO, MosquittoBroker  # noqa: E402
from tests.faults import net_scenarios as net  # noqa: E402

PARTS = ("broker", "link", "superlink", "trainer", "swap", "store")


@dataclass
class Row:
    fault: str
    size: str
    promise: str
    result: str = "not run"
    figures: str = ""


def machine() -> str:
    try:
        out = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True, timeout=10)
        mosquitto = out.stdout.splitlines()[0].removeprefix("mosquitto version ")
    except (OSError, IndexError, subprocess.SubprocessError):
        mosquitto = "absent"
    return describe(
        "paho-mqtt",
        "flwr",
        ("tensorflow", "tensorflow-cpu"),
        "ai-edge-litert",
        extra=f"mosquitto {mosquitto}; load average {os.getloadavg()[0]:.1f} at start",
    )


def _verdict(row: Row, problems: list[str]) -> None:
    row.result = "kept" if not problems else "BROKEN: " + "; ".join(problems)


def _guarded(row: Row, run: Callable[[], None]) -> None:
    """Run one scenario; a broken assertion or a crash goes into the row, not out of the bench."""
    started = time.monotonic()
    try:
        run()
    except AssertionError as exc:
        row.result = f"BROKEN: {exc}".splitlines()[0][:300]
    except Exception as exc:
        traceback.print_exc()
        row.result = f"ERROR: {type(exc).__name__}: {exc}".splitlines()[0][:300]
    row.figures += f"{'; ' if row.figures else ''}{time.monotonic() - started:.0f} s wall"


# -- the scenarios ------------------------------------------------------------------------------


def broker_rows(work: Path, broker: MosquittoBroker, args: argparse.Namespace) -> list[Row]:
    rows = []
    for name, down_s, bound in (
        ("roomy", args.broker_down_s, 1000),
        ("tight", args.tight_down_s, args.tight_bound),
    ):
        row = Row(
            f"broker stopped, outbox bound {bound}",
            f"{down_s:g} s",
            "health queued in the SQLite outbox within the bound, delivered in order after; "
            "drop-oldest counted and reported",
        )

        def run(
            row: Row = row, name: str = name, down_s: float = down_s, bound: int = bound
        ) -> None:
            r = net.broker_outage(work / name, broker, down_s=down_s, bound=bound, progress=say)
            _verdict(row, r.problems())
            _, missing = net.order(r.seqs)
            row.figures = (
                f"queued max {r.queued_max}/{bound}; dropped {r.dropped} (missing seqs "
                f"{len(missing)}, reported {r.reported_dropped}); delivered after "
                f"{len(r.after)} in order; drained in {r.drain_s:.1f} s"
            )

        _guarded(row, run)
        rows.append(row)
    return rows


def link_rows(work: Path, broker: MosquittoBroker, args: argparse.Namespace) -> list[Row]:
    rows = []
    for mode in ("cut", "blackhole"):
        row = Row(
            f"agent link {'cut' if mode == 'cut' else 'black-holed'}, broker up",
            f"{args.link_down_s:g} s",
            "retained status 'lost' (Last Will), 'ready' with the next session after; "
            "health queued and delivered in order",
        )

        def run(row: Row = row, mode: str = mode) -> None:
            r = net.link_loss(work / mode, broker, mode=mode, down_s=args.link_down_s, progress=say)
            _verdict(row, r.problems())
            row.figures = (
                f"'lost' after {r.lost_after_s:.1f} s (keepalive {net.KEEPALIVE_S} s); 'ready' "
                f"{r.ready_after_s:.1f} s after restore; session {r.lost['session']} -> "
                f"{r.ready_after['session']}; queued max {r.queued_max}; {len(r.seqs)} health "
                "in order, none missing"
            )

        _guarded(row, run)
        rows.append(row)
    return rows


def _predictions(statuses: dict[str, list[int]]) -> str:
    ok = sum(s == 200 for v in statuses.values() for s in v)
    return f"predictions {ok} ok / {sum(len(v) for v in statuses.values()) - ok} failed"


def federation_rows(work: Path, args: argparse.Namespace, parts: set[str]) -> list[Row]:
    from tests.agent.serve.bundles import export

    kill = Row(
        "SuperLink SIGKILL mid-round, restarted on the same address and database",
        f"{args.superlink_kills} kill(s)",
        "devices keep serving predictions (HTTP 200); SuperNodes rejoin; a new run completes",
    )
    hang = Row(
        "trainer frozen in round 1 (over its time budget)",
        "max_seconds 30, 2 rounds",
        "trainer stopped, reported (error code in the round, /healthz), the next round works",
    )
    with net.fed_fleet(work, export(work / "bundles"), victim_max_seconds=30.0) as fleet:
        say(f"fleet of {len(fleet.devices)} up")
        if "superlink" in parts:

            def run_kills() -> None:
                r = net.superlink_kills(fleet, kills=args.superlink_kills, progress=say)
                _verdict(kill, r.problems())
                rejoin = [k.rejoin_s for k in r.kills]
                settled = [f"{k.run_status} after {k.settled_s or 0:.0f} s" for k in r.kills]
                kill.figures = (
                    f"rejoin median {statistics.median(rejoin):.1f} s (max {max(rejoin):.1f}); "
                    f"down {statistics.median(k.down_s for k in r.kills):.1f} s; interrupted "
                    f"runs: {', '.join(settled)}; orphans {sum(k.orphans for k in r.kills)}; "
                    f"new run {r.history.get('status')}; {_predictions(r.statuses)}"
                )

            _guarded(kill, run_kills)
        if "trainer" in parts:

            def run_hang() -> None:
                r = net.trainer_hang(fleet, progress=say)
                _verdict(hang, r.problems())
                first = r.replies[0].get("error", {}) if r.replies else {}
                second = "ok" if len(r.replies) > 1 and "error" not in r.replies[1] else "failed"
                hang.figures = (
                    f"round 1: code {first.get('code')} '{first.get('reason')}'; round 2 "
                    f"{second}; /healthz {' -> '.join(r.outcomes)}; {_predictions(r.statuses)}"
                )

            _guarded(hang, run_hang)
    return [row for row, part in ((kill, "superlink"), (hang, "trainer")) if part in parts]


def agent_rows(work: Path, args: argparse.Namespace, parts: set[str]) -> list[Row]:
    """The agent-local faults, from tests/faults/agent_scenarios.py (another part of the suite)."""
    rows = []
    missing = ""
    agent_scenarios: Any = None
    try:
        from tests.faults import agent_scenarios
    except ImportError as exc:  # the hook: nothing to run until that module exists
        missing = str(exc)
    wanted = (
        (
            "swap",
            "run_swap_kills",
            {"rounds": args.swap_rounds},
            f"{args.swap_rounds} round(s)",
            "agent SIGKILLed at every step of a model swap",
            "after restart the model is the old or the new one, never partial, and it serves",
        ),
        (
            "store",
            "run_store_kills",
            {"kills": args.store_kills},
            f"{args.store_kills} kill(s)",
            "store writer SIGKILLed while retention runs",
            "no corruption, committed rows kept, no holes in ids or sequence numbers",
        ),
    )
    for part, name, kwargs, size, fault, promise in wanted:
        if part not in parts:
            continue
        row = Row(fault, size, promise)
        scenario = getattr(agent_scenarios, name, None)
        if scenario is None:
            row.result = "not run: tests/faults/agent_scenarios.py has no " + name
            row.figures = missing if agent_scenarios is None else ""
            rows.append(row)
            continue

        def run(
            row: Row = row,
            scenario: Any = scenario,
            kwargs: dict[str, Any] = kwargs,
            part: str = part,
        ) -> None:
            figures = scenario(work / part, **kwargs)  # raises AssertionError on a broken promise
            row.result = "kept"
            row.figures = ", ".join(f"{k} {v}" for k, v in dict(figures or {}).items())

        _guarded(row, run)
        rows.append(row)
    return rows


# -- main ---------------------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short versions (smoke run)")
    parser.add_argument("--only", default=",".join(PARTS), help=f"among {','.join(PARTS)}")
    parser.add_argument("--broker-down-s", type=float, default=600.0)
    parser.add_argument("--tight-down-s", type=float, default=120.0)
    parser.add_argument("--tight-bound", type=int, default=30)
    parser.add_argument("--link-down-s", type=float, default=60.0)
    parser.add_argument("--superlink-kills", type=int, default=3)
    parser.add_argument("--swap-rounds", type=int, default=3)
    parser.add_argument("--store-kills", type=int, default=30)
    args = parser.parse_args()
    if args.quick:
        args.broker_down_s, args.tight_down_s, args.tight_bound = 15.0, 10.0, 4
        args.link_down_s, args.superlink_kills = 3.0, 1
        args.swap_rounds, args.store_kills = 1, 3
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    if unknown := parts - set(PARTS):
        parser.error(f"--only: expected names among {', '.join(PARTS)}. Received: {unknown}")

    print(machine(), flush=True)
    started = time.monotonic()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="orchard-chaos-") as tmp:
        work = Path(tmp)
        if parts & {"broker", "link"}:
            (work / "mosquitto").mkdir()
            broker = MosquittoBroker(work / "mosquitto")
            broker.start()
            try:
                if "broker" in parts:
                    rows += broker_rows(work / "broker", broker, args)
                if "link" in parts:
                    rows += link_rows(work / "link", broker, args)
            finally:
                broker.stop()
        if parts & {"superlink", "trainer"}:
            (work / "fleet").mkdir()
            rows += federation_rows(work / "fleet", args, parts)
        rows += agent_rows(work / "agent", args, parts)

    print(f"\n{'quick' if args.quick else 'full'} run, {time.monotonic() - started:.0f} s\n")
    print("| fault | duration/count | promise | result | figures |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row.fault} | {row.size} | {row.promise} | {row.result} | {row.figures} |")
    return 0 if all(r.result == "kept" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
